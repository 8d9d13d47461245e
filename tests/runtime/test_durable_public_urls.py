"""Durable management URLs on the real runtime process (tests/apps/durable_app) with
PUBLIC_BASE_URL set: they carry the durabletask_extension system key and the configured base,
even when the caller used the master key and a forged Host header; bad management API input is
a 400 with a message.

The runtime's public base is not reachable from here, so URLs are followed on the loopback
address with the same path and query.
"""

from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from tests.support.durable_client import TERMINAL, DurableApp, running_durable_app
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime

BASE = "https://exports.example.org"
FORGED_HOST = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableApp]:
    state = tmp_path_factory.mktemp("durable-urls") / "state"
    with running_durable_app(state, env={"PUBLIC_BASE_URL": BASE + "/"}) as client:
        yield client


def system_key(app: DurableApp) -> str:
    return str(app.rt.keys()["systemKeys"]["durabletask_extension"])


def local(app: DurableApp, url: str) -> str:
    """The same URL on the runtime's loopback address."""
    assert url.startswith(BASE + "/"), url
    return app.rt.base_url + url.removeprefix(BASE)


def assert_management_url(app: DurableApp, url: str, instance_id: str) -> None:
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}" == BASE, url
    assert parts.path.startswith(f"/runtime/webhooks/durabletask/instances/{instance_id}"), url
    assert parse_qs(parts.query)["code"] == [system_key(app)], url
    assert app.rt.master_key not in url and "evil" not in url, url


def finish(app: DurableApp, status_url: str) -> None:
    def done() -> bool:
        return httpx.get(local(app, status_url)).json()["runtimeStatus"] in TERMINAL

    wait_until(done, timeout=60, interval=0.1, message=status_url)


def test_http_starter_with_master_key_and_forged_host(app: DurableApp) -> None:
    r = httpx.post(
        app.rt.url("api/orchestrators/chaining"),
        params={"code": app.rt.master_key},
        headers=FORGED_HOST,
        content=b"",
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["Location"] == body["statusQueryGetUri"]
    for key, url in body.items():
        if key != "id":
            assert_management_url(app, url, body["id"])
    finish(app, body["statusQueryGetUri"])


def test_webhook_start_with_master_key_and_forged_host(app: DurableApp) -> None:
    r = httpx.post(
        app.rt.url("runtime/webhooks/durabletask/orchestrators/approval"),
        headers={**FORGED_HOST, "x-functions-key": app.rt.master_key},
        json="30",  # the Python orchestrator's get_input() parses a JSON string (durable-protocol.md §4.4)
    )
    assert r.status_code == 202, r.text
    body = r.json()
    assert r.headers["Location"] == body["statusQueryGetUri"]
    assert "rewindPostUri" not in body  # the extension's own 202 omits it
    for key, url in body.items():
        if key != "id":
            assert_management_url(app, url, body["id"])
    # A running instance's status is 202 with a Location built the same way.
    status_path = urlsplit(body["statusQueryGetUri"]).path

    def running() -> httpx.Response | None:
        r = httpx.get(app.rt.url(status_path), params={"code": app.rt.master_key}, headers=FORGED_HOST)
        return r if r.json()["runtimeStatus"] == "Running" else None

    status = wait_until(running, timeout=30, message=body["id"])
    assert status.status_code == 202
    assert_management_url(app, status.headers["Location"], body["id"])
    terminate = body["terminatePostUri"].replace("{text}", "done")
    assert httpx.post(local(app, terminate)).status_code == 202
    finish(app, body["statusQueryGetUri"])


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"top": str(10**30)}, "top must be a whole number from 1 to 1000"),
        ({"top": "-5"}, "top must be a whole number from 1 to 1000"),
        ({"createdTimeFrom": "not-a-date"}, "createdTimeFrom must be an ISO 8601 date/time"),
        ({"createdTimeTo": "0001-01-01T00:00:00+14:00"}, "createdTimeTo must be an ISO 8601 date/time"),
    ],
)
def test_bad_listing_parameters_are_400(app: DurableApp, query: dict[str, str], message: str) -> None:
    for route in (
        "runtime/webhooks/durabletask/instances",
        f"runtime/rpc/{system_key(app)}/durabletask/instances",
    ):
        r = httpx.get(app.rt.url(route), params={"code": system_key(app), **query})
        assert r.status_code == 400, (route, r.text)
        assert r.json()["Message"].startswith(message)


@pytest.mark.parametrize("body", [b"\xff\xfe", b"{oops", b"[" * 50_000])
def test_bad_start_bodies_are_400(app: DurableApp, body: bytes) -> None:
    r = httpx.post(
        app.rt.url("runtime/webhooks/durabletask/orchestrators/chaining"),
        params={"code": system_key(app)},
        content=body,
    )
    assert r.status_code == 400
    assert r.json()["Message"].startswith("The request body is not valid JSON")
