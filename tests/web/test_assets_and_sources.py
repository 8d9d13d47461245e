"""The pages' HTTP side, without a browser: anonymous pages and assets with a strict Content
Security Policy and ETags, nothing served outside `http_api/static/`, and the listing API of the
submit page (`/api/sources/blob`, `/api/sources/local`) with its refusals naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.support.azurite import Azurite
from tests.support.browser import upload
from tests.support.runtime import RuntimeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

PAGES = ["ui", "ui/jobs/some-id", "ui/sessions", "ui/submit", "ui/operator"]


@pytest.mark.parametrize("path", PAGES)
def test_every_page_is_anonymous_and_loads_only_this_origins_assets(
    service: RuntimeProcess, path: str
) -> None:
    r = httpx.get(service.url(f"api/{path}"), timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/html")
    csp = r.headers["content-security-policy"]
    assert "default-src 'none'" in csp and "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert r.headers["x-content-type-options"] == "nosniff"
    # Every asset the page names is under /api/ui/static/ on this origin, and is served.
    assets = re.findall(r'(?:src|href)="([^"]+)"', r.text)
    assert assets and all(a.startswith(("/api/", "data:", "#")) for a in assets), assets
    for asset in (a for a in assets if "/static/" in a):
        got = httpx.get(service.url(asset), timeout=30)
        assert got.status_code == 200, asset
    assert "{{" not in r.text  # every placeholder filled


def test_assets_have_types_and_etags_and_nothing_else_is_served(service: RuntimeProcess) -> None:
    js = httpx.get(service.url("api/ui/static/common.js"), timeout=30)
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    again = httpx.get(service.url("api/ui/static/common.js"), headers={"If-None-Match": js.headers["etag"]})
    assert again.status_code == 304
    css = httpx.get(service.url("api/ui/static/style.css"), timeout=30)
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    for name in ["layout.html", "job.html", "nope.js", "..%2Fweb.py", ".hidden.js", "COMMON.JS"]:
        assert httpx.get(service.url(f"api/ui/static/{name}"), timeout=30).status_code == 404, name


def test_the_listing_api_needs_a_key(service: RuntimeProcess) -> None:
    for path in ["api/sources/blob?container=acquired", "api/sources/local"]:
        assert httpx.get(service.url(path), timeout=30).status_code == 401


def test_a_blob_prefix_lists_folders_and_files(api: httpx.Client, azurite: Azurite) -> None:
    upload(azurite, "pick-api", {"v1/a.dcm": b"a" * 10, "v1/sub/b.dcm": b"b", "v2/c.dcm": b"c"})
    top = api.get("/api/sources/blob", params={"container": "pick-api"}).json()
    assert [(e["name"], e["kind"]) for e in top["entries"]] == [("v1/", "folder"), ("v2/", "folder")]
    v1 = api.get("/api/sources/blob", params={"container": "pick-api", "prefix": "v1/"}).json()
    assert [e["name"] for e in v1["entries"]] == ["v1/sub/", "v1/a.dcm"]
    assert v1["entries"][1]["size"] == 10 and v1["continuation"] is None
    every = api.get(
        "/api/sources/blob", params={"container": "pick-api", "recursive": "true", "limit": "2"}
    ).json()
    assert [e["name"] for e in every["entries"]] == ["v1/a.dcm", "v1/sub/b.dcm"] and every["continuation"]
    rest = api.get(
        "/api/sources/blob",
        params={"container": "pick-api", "recursive": "true", "continuation": every["continuation"]},
    ).json()
    assert [e["name"] for e in rest["entries"]] == ["v2/c.dcm"]


def test_the_local_root_lists_without_links_out(api: httpx.Client, local_root: Path) -> None:
    lab = api.get("/api/sources/local", params={"path": "lab"}).json()
    assert lab["source"] == "local"
    assert [(e["name"], e["kind"]) for e in lab["entries"]] == [
        ("lab/notes.txt", "file"),
        ("lab/run-1/", "folder"),
    ]
    run = api.get("/api/sources/local", params={"path": "lab/run-1", "recursive": "true"}).json()
    assert [e["name"] for e in run["entries"]] == [
        "lab/run-1/a.bin",
        "lab/run-1/b.bin",
        "lab/run-1/sub/c.bin",
    ]


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("blob", {}, 400, "container"),
        ("blob", {"container": "Not_Valid"}, 400, "container"),
        ("blob", {"container": "never-made-here"}, 404, "container"),
        ("blob", {"container": "pick-api", "prefix": "/etc"}, 400, "prefix"),
        ("blob", {"container": "pick-api", "limit": "5000"}, 400, "limit"),
        ("local", {"path": "../"}, 400, "path"),
        ("local", {"path": "/etc"}, 400, "path"),
        ("local", {"path": "lab/escape"}, 400, "path"),
        ("local", {"path": "lab/nope"}, 404, "path"),
        ("local", {"path": "lab", "continuation": "x"}, 400, "continuation"),
    ],
)
def test_bad_listings_are_refused_naming_the_field(
    api: httpx.Client, path: str, params: dict[str, str], status: int, field: str
) -> None:
    r = api.get(f"/api/sources/{path}", params=params)
    assert r.status_code == status, r.text
    assert r.json()["error"]["field"] == field, r.json()
