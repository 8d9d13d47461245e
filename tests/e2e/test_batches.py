"""End to end: batches of files (seed 001) from Azurite to a real WebDAV server (wsgidav) and to
Blob, through the runtime running function_app.py. Checksums compare every destination file
with its source; faults come from the WebDAV server's injection."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from tests.support.azurite import Azurite
from tests.support.export_env import TERMINAL, ExportClient
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

FAST_RETRY = {"first_retry_interval_ms": 200, "max_attempts": 4}


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:  # the service wants a default source; unused here
        yield server


@pytest.fixture(scope="module")
def dav() -> Iterator[WebDavTestServer]:
    with WebDavTestServer() as server:
        yield server


def upload(azurite: Azurite, container: str, files: dict[str, bytes]) -> None:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as c:
        if not c.exists():
            c.create_container()
        for name, data in files.items():
            c.upload_blob(name, data, overwrite=True)


def some_files(n: int, prefix: str, size: int = 20_000) -> dict[str, bytes]:
    return {f"{prefix}/scan-{i:03d}.dcm": os.urandom(size + i) for i in range(n)}


def put_body(dav: WebDavTestServer, container: str, items: list[str], **options: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "blob", "container": container},
        "items": items,
        "destination": {
            "kind": "http_put",
            "base_url": dav.base_url,
            "url_template": "{base}/{project}/{path}",
            "create_parents": True,
        },  # fmt: skip
        "options": {"retry": FAST_RETRY, **options},
        "requested_by": "tech@example.com",
        "labels": {"project": "p1"},
    }


def start(client: ExportClient, body: dict[str, Any]) -> str:
    r = client.http.post(client.rt.url("api/batches"), json=body)
    assert r.status_code == 202, r.text
    assert r.headers["Location"].endswith(f"/api/batches/{r.json()['id']}")
    return str(r.json()["id"])


def status(client: ExportClient, job_id: str) -> dict[str, Any]:
    r = client.http.get(client.rt.url(f"api/batches/{job_id}"))
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait(
    client: ExportClient, job_id: str, states: set[str] = TERMINAL, timeout: float = 90
) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        st = status(client, job_id)
        return st if st["state"] in states else None

    return wait_until(done, timeout=timeout, interval=0.2, message=f"batch {job_id} to reach {states}")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_a_batch_of_50_files_to_webdav_arrives_byte_identical(
    client: ExportClient, azurite: Azurite, dav: WebDavTestServer
) -> None:
    files = some_files(50, "session-a")
    upload(azurite, "acquired", files)
    job = start(client, put_body(dav, "acquired", list(files), concurrency=6))
    final = wait(client, job)
    assert final["state"] == "succeeded", final
    assert final["counts"] == {"items": 50, "succeeded": 50}
    assert final["bytes"]["done"] == sum(len(d) for d in files.values())
    for name, data in files.items():
        assert sha(dav.path(f"p1/{name}").read_bytes()) == sha(data), name
    item = final["items"][0]
    assert item["destination"].startswith(dav.base_url) and item["bytes_done"] == item["bytes_total"]
    listed = client.http.get(
        client.rt.url("api/jobs"), params={"kind": "batch", "requested_by": "tech@example.com"}
    )
    assert job in [j["id"] for j in listed.json()["jobs"]]


def test_a_flapping_server_ends_in_success_with_retrying_visible(
    client: ExportClient, azurite: Azurite, dav: WebDavTestServer
) -> None:
    files = some_files(3, "session-b")
    upload(azurite, "acquired", files)
    flaky = next(iter(files))
    dav.fail(f"/dav/p1/{flaky}", 503, times=3, method="PUT")
    try:
        job = start(
            client,
            put_body(
                dav, "acquired", list(files), retry={"first_retry_interval_ms": 1500, "max_attempts": 5}
            ),
        )
        seen = wait(client, job, {"retrying", *TERMINAL})
        assert seen["state"] == "retrying", seen
        assert any(i["state"] == "retrying" and "503" in (i["last_error"] or "") for i in seen["items"]), (
            seen["items"]
        )
        final = wait(client, job)
    finally:
        dav.clear_faults()
    assert final["state"] == "succeeded", final
    flaky_item = next(i for i in final["items"] if i["item"] == flaky)
    assert flaky_item["attempts"] == 4
    assert sha(dav.path(f"p1/{flaky}").read_bytes()) == sha(files[flaky])


def test_a_forbidden_item_fails_alone_and_a_retry_reruns_only_it(
    client: ExportClient, azurite: Azurite, dav: WebDavTestServer
) -> None:
    files = some_files(5, "session-c")
    upload(azurite, "acquired", files)
    denied = sorted(files)[2]
    dav.fail(f"/dav/p1/{denied}", 403, times=None, reason="this path is closed", method="PUT")
    try:
        job = start(client, put_body(dav, "acquired", list(files)))
        final = wait(client, job)
    finally:
        dav.clear_faults()
    assert final["state"] == "failed", final
    assert final["counts"] == {"items": 5, "succeeded": 4, "failed": 1}
    bad = next(i for i in final["items"] if i["item"] == denied)
    assert "403" in bad["last_error"] and bad["attempts"] == 1  # permanent: not retried
    assert denied in final["last_error"]
    before = len(dav.requests_to("PUT"))
    r = client.http.post(client.rt.url(f"api/batches/{job}/retry"))
    assert r.status_code == 202, r.text
    again = wait(client, job)
    assert again["state"] == "succeeded", again
    puts = [q.path for q in dav.requests_to("PUT")[before:]]
    assert puts == [f"/dav/p1/{denied}"]  # only the failed item ran again
    assert sha(dav.path(f"p1/{denied}").read_bytes()) == sha(files[denied])


def test_bad_batches_are_refused_naming_the_field(client: ExportClient, dav: WebDavTestServer) -> None:
    good = put_body(dav, "acquired", ["a.dcm", "b.dcm"])
    cases = [
        ({**good, "items": []}, "items"),
        ({**good, "items": ["a.dcm", "a.dcm"]}, "items[1]"),
        ({**good, "source": {"kind": "ftp"}}, "source.kind"),
        ({**good, "source": {"kind": "local"}}, "source.kind"),  # no BATCH_LOCAL_ROOT here
        (
            {**good, "destination": {**good["destination"], "url_template": "{base}/{nope}"}},
            "destination.url_template",
        ),
        ({**good, "destination": {**good["destination"], "auth": "bearer"}}, "destination.secret"),
        ({**good, "options": {"concurrency": 0}}, "options.concurrency"),
        ({**good, "source": {"kind": "url"}, "items": ["http://10.0.0.7/x.dcm"]}, "items[0]"),
    ]
    for body, field in cases:
        r = client.http.post(client.rt.url("api/batches"), json=body)
        assert r.status_code == 400, (field, r.text)
        assert r.json()["error"]["field"] == field, (field, r.json())
    assert client.http.get(client.rt.url("api/batches/nope")).status_code == 404


def test_cancel_stops_in_flight_items_and_leaves_no_half_written_blob(
    client: ExportClient, azurite: Azurite
) -> None:
    files = some_files(30, "session-d", size=3_000_000)
    upload(azurite, "acquired", files)
    body = {"source": {"kind": "blob", "container": "acquired"}, "items": list(files),
            "destination": {"kind": "blob", "container": "delivered", "path_prefix": "d"},
            "options": {"concurrency": 2}, "requested_by": "tech@example.com"}  # fmt: skip
    job = start(client, body)
    wait_until(
        lambda: status(client, job)["counts"].get("succeeded", 0) >= 2, timeout=60, message="some items moved"
    )
    r = client.http.delete(client.rt.url(f"api/batches/{job}"))
    assert r.status_code == 202, r.text
    final = wait(client, job, timeout=60)
    assert final["state"] == "cancelled", final
    assert 2 <= final["counts"].get("succeeded", 0) < 30
    assert not {i["state"] for i in final["items"]} - {"succeeded", "cancelled"}
    with ContainerClient.from_connection_string(azurite.connection_string, "delivered") as c:
        for blob in c.list_blobs(name_starts_with="d/"):
            data = c.download_blob(blob.name).readall()
            assert sha(data) == sha(files[blob.name.removeprefix("d/")]), blob.name  # whole, or absent


@pytest.mark.slow
def test_kill_9_mid_batch_completes_with_every_file_identical(
    client: ExportClient, azurite: Azurite, dav: WebDavTestServer, service: RuntimeProcess
) -> None:
    files = some_files(20, "session-e", size=2_000_000)
    upload(azurite, "acquired", files)
    job = start(client, put_body(dav, "acquired", list(files), concurrency=2))
    wait_until(
        lambda: status(client, job)["counts"].get("succeeded", 0) >= 3, timeout=60, message="some items moved"
    )
    service.kill()
    service.start()
    final = wait(client, job, timeout=120)
    assert final["state"] == "succeeded", final
    for name, data in files.items():
        assert sha(dav.path(f"p1/{name}").read_bytes()) == sha(data), name


def test_webdav_needs_its_credentials(azurite: Azurite, client: ExportClient) -> None:
    with WebDavTestServer(bearer="dav-token-123") as secured:
        files = some_files(2, "session-f")
        upload(azurite, "acquired", files)
        body = put_body(secured, "acquired", list(files))  # type: ignore[arg-type]
        body["destination"] = {**body["destination"], "auth": "bearer", "secret": "wrong-token-456"}
        job = start(client, body)
        final = wait(client, job)
        assert final["state"] == "failed" and "credentials refused" in final["last_error"], final
        assert "wrong-token-456" not in str(final) and "wrong-token-456" not in client.rt.log_text()
        body["destination"]["secret"] = "dav-token-123"
        ok = wait(client, start(client, body))
        assert ok["state"] == "succeeded", ok
        assert httpx.get(f"{secured.base_url}/p1/{next(iter(files))}").status_code == 401


def test_a_batch_over_several_windows_keeps_history_bounded(
    client: ExportClient, azurite: Azurite, service: RuntimeProcess
) -> None:
    files = {f"session-g/f-{i:04d}.bin": os.urandom(64) for i in range(250)}
    upload(azurite, "acquired", files)
    body = {"source": {"kind": "blob", "container": "acquired"}, "items": list(files),
            "destination": {"kind": "blob", "container": "delivered", "path_prefix": "g"},
            "options": {"concurrency": 16}, "requested_by": "tech@example.com"}  # fmt: skip
    job = start(client, body)
    final = wait(client, job, timeout=240)
    assert final["state"] == "succeeded" and final["counts"] == {"items": 250, "succeeded": 250}, final[
        "counts"
    ]
    assert len(final["items"]) == 250 and not final["items_more"]
    page = client.http.get(client.rt.url(f"api/batches/{job}"), params={"items_offset": "200"}).json()
    assert [i["index"] for i in page["items"]] == list(range(200, 250))
    url = service.url(f"runtime/webhooks/durabletask/instances/{job}")
    history = httpx.get(url, params={"code": service.master_key, "showHistory": "true"}, timeout=30).json()
    # The last execution holds the last window only (50 items), not all 250: about one event each.
    events = len(history["historyEvents"])
    print("history events of the last execution:", events)
    assert events < 150, events  # one execution of all 250 items would hold more than 250


def test_a_missing_source_file_fails_at_once_with_a_reason(client: ExportClient, azurite: Azurite) -> None:
    files = some_files(2, "session-h")
    upload(azurite, "acquired", files)
    items = [*files, "session-h/never-written.dcm"]
    body = {"source": {"kind": "blob", "container": "acquired"}, "items": items,
            "destination": {"kind": "blob", "container": "delivered", "path_prefix": "h"},
            "options": {"retry": FAST_RETRY, "partial_failure": "succeed"}, "requested_by": "tech@example.com"}  # fmt: skip
    final = wait(client, start(client, body))
    assert final["state"] == "succeeded", final  # partial_failure: succeed
    missing = final["items"][2]
    assert missing["state"] == "failed" and missing["attempts"] == 1, missing
    assert "no such blob" in missing["last_error"], missing
    assert final["counts"] == {"items": 3, "succeeded": 2, "failed": 1}
