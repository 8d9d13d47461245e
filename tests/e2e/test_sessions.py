"""End to end: auto-export of generated data (seed 000) through the runtime running function_app.py.

Apps write blobs `{app}/{session}/{name}` to the generated-data container in Azurite; the blob
trigger and the `session-completed` queue start each session's job; a real WebDAV server
(wsgidav) is the partner's PUT server. Every file that arrives is compared byte for byte.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient, ContentSettings
from azure.storage.queue import QueueClient

from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

CONTAINER = "generated-data"
QUEUE = "session-completed"
FAST_RETRY = {"first_retry_interval_ms": 300, "max_attempts": 6}


def config(dav: WebDavTestServer) -> dict[str, Any]:
    put = {"kind": "http_put", "base_url": dav.base_url, "create_parents": True}
    return {"apps": {
        "recon": {"destination": {**put, "url_template": "{base}/{app}/{session}/{path}"},
                  "rules": [{"name": "no-temp", "action": "exclude", "names": ["*.tmp"]},
                            {"name": "no-scratch", "action": "exclude", "content_types": ["application/x-scratch"]}],
                  "options": {"retry": FAST_RETRY}},
        "report": {"timing": "session_end", "destination": {**put, "url_template": "{base}/{study}/{session}/{path}"},
                   "options": {"retry": FAST_RETRY}},
        "off": {"enabled": False, "destination": {**put, "url_template": "{base}/off/{path}"}},
    }}  # fmt: skip


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:  # the service wants a default source; unused here
        yield server


@pytest.fixture(scope="module")
def dav() -> Iterator[WebDavTestServer]:
    with WebDavTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, dav: WebDavTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("sessions"),
                       AUTO_EXPORT_CONFIG=json.dumps(config(dav)))  # fmt: skip
    try:
        yield rt
    finally:
        rt.stop()


def container(azurite: Azurite) -> ContainerClient:
    c = ContainerClient.from_connection_string(azurite.connection_string, CONTAINER)
    if not c.exists():
        c.create_container()
    return c


def upload(azurite: Azurite, files: dict[str, bytes], content_type: str | None = None) -> None:
    with container(azurite) as c:
        for name, data in files.items():
            settings = ContentSettings(content_type=content_type) if content_type else None
            c.upload_blob(name, data, overwrite=True, content_settings=settings)


def send(azurite: Azurite, message: dict[str, Any] | str, queue: str = QUEUE) -> None:
    text = message if isinstance(message, str) else json.dumps(message)
    with QueueClient.from_connection_string(azurite.connection_string, queue) as q:
        with contextlib.suppress(ResourceExistsError):
            q.create_queue()
        q.send_message(base64.b64encode(text.encode()).decode())


def session_status(client: ExportClient, session_id: str) -> dict[str, Any] | None:
    r = client.http.get(client.rt.url(f"api/sessions/{session_id}"))
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    return dict(r.json())


def wait_state(client: ExportClient, session_id: str, state: str, timeout: float = 90) -> dict[str, Any]:
    def reached() -> dict[str, Any] | None:
        found = session_status(client, session_id)
        return found if found and found["state"] == state else None

    return wait_until(
        reached,
        timeout=timeout,
        message=f"session {session_id} {state}: {session_status(client, session_id)}",
    )


def arrived(dav: WebDavTestServer, relative: str) -> bytes | None:
    path: Path = dav.path(relative)
    return path.read_bytes() if path.exists() else None


def new_session() -> str:
    return "s-" + uuid.uuid4().hex[:10]


def test_a_session_of_30_files_arrives_with_5_skipped_by_rules(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    kept = {f"recon/{session}/series-{i:02d}.dcm": os.urandom(5_000 + i) for i in range(25)}
    temp = {f"recon/{session}/work-{i}.tmp": b"temp" for i in range(3)}
    scratch = {f"recon/{session}/scratch-{i}.bin": b"scratch" for i in range(2)}
    upload(azurite, kept, "application/dicom")
    upload(azurite, temp)
    upload(azurite, scratch, "application/x-scratch")
    send(
        azurite, {"session_id": session, "study_id": "study-1", "app": "recon", "prefix": f"recon/{session}/"}
    )
    done = wait_state(client, session, "complete")
    for name, data in kept.items():
        assert arrived(dav, name) == data, name
    for name in [*temp, *scratch]:
        assert arrived(dav, name) is None, name
    (app,) = done["apps"]
    assert app["counts"] == {"items": 30, "succeeded": 25, "skipped": 5}
    skipped = {i["item"]: i["rule"] for i in app["items"] if i["state"] == "skipped"}
    assert skipped == {
        **{n.split("/", 2)[2]: "no-temp" for n in temp},
        **{n.split("/", 2)[2]: "no-scratch" for n in scratch},
    }
    study = client.http.get(client.rt.url("api/studies/study-1")).json()
    assert {s["session_id"]: s["state"] for s in study["sessions"]}[session] == "complete"
    job = client.http.get(client.rt.url(f"api/jobs/{app['job_id']}")).json()
    assert job["kind"] == "session" and job["state"] == "succeeded"


def test_the_same_completion_message_twice_exports_once(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    files = {f"report/{session}/summary-{i}.pdf": os.urandom(3_000) for i in range(3)}
    upload(azurite, files)
    message = {"session_id": session, "study_id": "study-2", "app": "report"}
    send(azurite, message)
    wait_state(client, session, "complete")
    send(azurite, message)
    wait_until(lambda: not _queue_length(azurite, QUEUE), timeout=30, message="second message taken")
    assert session_status(client, session)["state"] == "complete"  # type: ignore[index]
    for name, data in files.items():
        relative = f"study-2/{session}/{name.split('/', 2)[2]}"
        assert arrived(dav, relative) == data
        assert len(dav.requests_to("PUT", "/dav/" + relative)) == 1, relative


def test_blobs_before_and_after_the_completion_message_arrive_once(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    early = {f"recon/{session}/early-{i}.dcm": os.urandom(2_000) for i in range(3)}
    upload(azurite, early)
    wait_until(
        lambda: all(arrived(dav, n) for n in early), timeout=60, message="early blobs exported as they came"
    )
    send(azurite, {"session_id": session, "study_id": "study-3", "app": "recon"})
    wait_state(client, session, "complete")
    late = {f"recon/{session}/late-{i}.dcm": os.urandom(2_000) for i in range(2)}
    changed = {next(iter(early)): os.urandom(2_500)}  # a blob rewritten after its export: again, once
    upload(azurite, {**late, **changed})
    wait_until(lambda: all(arrived(dav, n) == d for n, d in {**late, **changed}.items()), timeout=60,
               message="late and changed blobs exported")  # fmt: skip
    done = wait_state(client, session, "complete")
    assert done["apps"][0]["counts"] == {"items": 5, "succeeded": 5}
    for name in [*early, *late]:
        expected = 2 if name in changed else 1
        assert len(dav.requests_to("PUT", "/dav/" + name)) == expected, name


def test_a_flapping_put_server_shows_retrying_then_succeeds(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    name = f"recon/{session}/flaky.dcm"
    dav.fail("/dav/" + name, 503, times=3, method="PUT")
    data = os.urandom(4_000)
    upload(azurite, {name: data})
    wait_state(client, session, "retrying", timeout=60)
    send(azurite, {"session_id": session, "study_id": "study-4", "app": "recon"})
    done = wait_state(client, session, "complete")
    assert arrived(dav, name) == data
    assert done["apps"][0]["items"][0]["attempts"] >= 2


def test_a_malformed_message_goes_to_the_poison_queue_and_an_unknown_app_fails_visibly(
    azurite: Azurite, client: ExportClient
) -> None:
    send(azurite, '{"session_id": 12, "app": "recon"}')
    wait_until(lambda: _queue_length(azurite, f"{QUEUE}-poison") >= 1, timeout=30, message="poison message")
    assert "session_id: must be a string" in client.rt.log_text()
    session = new_session()
    send(azurite, {"session_id": session, "study_id": "study-5", "app": "nosuchapp"})
    failed = wait_state(client, session, "failed")
    assert (
        "nosuchapp" in failed["apps"][0]["last_error"]
        and "AUTO_EXPORT_CONFIG" in failed["apps"][0]["last_error"]
    )


def test_a_disabled_app_and_a_session_end_app_wait_as_configured(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    upload(azurite, {f"off/{session}/x.dcm": b"x", f"report/{session}/r.pdf": b"report"})
    send(azurite, {"session_id": session, "study_id": "study-6", "app": "off"})
    wait_until(lambda: not _queue_length(azurite, QUEUE), timeout=30, message="message taken")
    assert session_status(client, session) is None  # report waits for its own completion message
    send(azurite, {"session_id": session, "study_id": "study-6", "app": "report"})
    wait_state(client, session, "complete")
    assert arrived(dav, f"study-6/{session}/r.pdf") == b"report"
    assert arrived(dav, f"off/{session}/x.dcm") is None


def _queue_length(azurite: Azurite, queue: str) -> int:
    with QueueClient.from_connection_string(azurite.connection_string, queue) as q:
        try:
            return int(q.get_queue_properties().approximate_message_count)
        except Exception:  # noqa: BLE001 - not created yet
            return 0


def test_bad_ids_are_400_naming_the_field_and_unknown_ones_404(client: ExportClient) -> None:
    for route in ("api/sessions/-bad", "api/studies/a%20b"):
        r = client.http.get(client.rt.url(route))
        assert r.status_code == 400, (route, r.text)
        assert r.json()["error"]["field"] == "id"
    assert client.http.get(client.rt.url("api/sessions/never-seen")).status_code == 404
    assert client.http.get(client.rt.url("api/studies/never-seen")).status_code == 404


@pytest.fixture
def own_service(
    azurite: Azurite, fhir: FhirTestServer, dav: WebDavTestServer, tmp_path: Path
) -> Iterator[RuntimeProcess]:
    """A runtime of this test's own, to kill."""
    rt = start_service(azurite, fhir, tmp_path, AUTO_EXPORT_CONFIG=json.dumps(config(dav)))
    try:
        yield rt
    finally:
        rt.stop()


@pytest.mark.parametrize("moment", ["before the trigger ran", "while the item was retrying"])
def test_kill_9_between_a_blobs_arrival_and_its_export_still_exports_it(
    azurite: Azurite, dav: WebDavTestServer, own_service: RuntimeProcess, moment: str
) -> None:
    client = ExportClient(own_service)
    session = new_session()
    name = f"recon/{session}/crash.dcm"
    data = os.urandom(50_000)
    if moment == "while the item was retrying":
        dav.fail("/dav/" + name, 503, times=None, method="PUT")
    upload(azurite, {name: data})
    if moment == "while the item was retrying":
        wait_state(client, session, "retrying", timeout=60)
    own_service.kill()
    dav.clear_faults()
    own_service.start()
    send(azurite, {"session_id": session, "study_id": "study-7", "app": "recon"})
    wait_state(client, session, "complete")
    assert arrived(dav, name) == data
    client.close()


def test_a_refused_item_fails_the_session_and_a_retry_sends_only_it(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    good, bad = f"recon/{session}/good.dcm", f"recon/{session}/bad.dcm"
    fault = dav.fail("/dav/" + bad, 403, times=None, reason="closed", method="PUT")
    upload(azurite, {good: b"good", bad: b"bad"})
    send(azurite, {"session_id": session, "study_id": "study-8", "app": "recon"})
    failed = wait_state(client, session, "failed")
    job_id = failed["apps"][0]["job_id"]
    assert "bad.dcm" in failed["apps"][0]["last_error"]
    dav.clear_faults()
    del fault
    r = client.http.post(client.rt.url(f"api/jobs/{job_id}/retry"))
    assert r.status_code == 202, r.text
    wait_state(client, session, "complete")
    assert arrived(dav, bad) == b"bad"
    assert len(dav.requests_to("PUT", "/dav/" + good)) == 1


def test_a_cancel_while_an_item_waits_to_retry_ends_the_session_at_once(
    azurite: Azurite, dav: WebDavTestServer, client: ExportClient
) -> None:
    session = new_session()
    name = f"recon/{session}/stuck.dcm"
    dav.fail("/dav/" + name, 503, times=None, method="PUT")
    upload(azurite, {name: b"stuck"})
    waiting = wait_state(client, session, "retrying", timeout=60)
    r = client.http.delete(client.rt.url(f"api/jobs/{waiting['apps'][0]['job_id']}"))
    assert r.status_code == 202, r.text
    done = wait_state(client, session, "cancelled", timeout=30)
    assert done["apps"][0]["items"][0]["state"] == "cancelled"
    dav.clear_faults()
    upload(azurite, {f"recon/{session}/later.dcm": b"later"})  # new data does not reopen a cancelled session
    send(azurite, {"session_id": session, "study_id": "study-9", "app": "recon"})
    wait_until(lambda: not _queue_length(azurite, QUEUE), timeout=30, message="message taken")
    assert session_status(client, session)["state"] == "cancelled"  # type: ignore[index]
