"""End to end: no job stays non-terminal, whatever happens to it or its orchestration.

An unreachable source (a closed port) goes `retrying` and then `failed` at the threshold with an
error a person can read; a cancel works while the job waits to retry; an operator who terminates
the job's orchestration, one of its type orchestrations, or purges the job's history sees the job
end (`failed`, or `cancelled` when a cancel was asked) on the next read. A source without
`/metadata` still exports. Real servers: the runtime on function_app.py, Azurite, the FHIR server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.e2e.test_export_faults import blobs, secrets_left
from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, export_body, start_service, validate
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.ports import free_port
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

PART_TERMINAL = {"succeeded", "failed", "cancelled", "skipped"}


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 60, "Observation": 60}) as server:
        yield server


@pytest.fixture
def client(service: RuntimeProcess) -> Iterator[ExportClient]:
    c = ExportClient(service)
    yield c
    c.close()


def unreachable_body(container: str, **options: Any) -> dict[str, Any]:
    closed = free_port()  # nothing listens there: every connection is refused
    return {
        "source": {"kind": "fhir", "base_url": f"http://127.0.0.1:{closed}/fhir", "types": ["Patient"]},
        "destination": {"kind": "blob", "container": container, "path_prefix": "p"},
        "requested_by": "engineer@example.com",
        "options": options,
    }


def durable_api(rt: RuntimeProcess, path: str, **params: str) -> httpx.Response:
    """The durable extension's management API, as an operator calls it (with the master key)."""
    url = rt.url(f"runtime/webhooks/durabletask/{path}")
    return httpx.request("POST" if path.endswith(("terminate", "suspend")) else "DELETE", url,
                         params={"code": rt.master_key, **params}, timeout=30)  # fmt: skip


def assert_readable(error: str | None) -> None:
    assert error, "an ended job that failed says why"
    assert "Traceback" not in error and 'File "' not in error and "\n" not in error, error
    assert len(error) <= 600, error


def assert_parts_terminal(status: dict[str, Any]) -> None:
    states = {t: p["state"] for t, p in status["progress"].items()}
    assert set(states.values()) <= PART_TERMINAL, states


def test_unreachable_source_retries_visibly_then_fails_with_a_readable_error(
    client: ExportClient, service: RuntimeProcess
) -> None:
    options = {"retry": {"first_retry_interval_ms": 100, "max_attempts": 1}, "failure_threshold": 3}
    job = client.start(unreachable_body("unreach", **options))
    seen = client.wait(job, timeout=60, states={"retrying", "succeeded", "failed", "cancelled"})
    assert seen["state"] == "retrying", seen
    assert_readable(seen["last_error"])
    assert "connection failed" in seen["last_error"] and "127.0.0.1" in seen["last_error"]
    status = client.wait(job, timeout=60)
    assert status["state"] == "failed", status
    assert status["finished"] is not None
    assert "3 times in a row" in status["last_error"] and "connection failed" in status["last_error"]
    assert_readable(status["last_error"])
    assert_parts_terminal(status)
    assert secrets_left(service, job) == []


@pytest.mark.parametrize(
    "base_url", ["http://169.254.169.254/fhir", "http://10.1.2.3:8080/fhir", "http://[::1]:9/fhir"]
)
def test_a_source_on_an_internal_address_is_refused_at_submission(
    client: ExportClient, base_url: str
) -> None:
    body = unreachable_body("internal")
    body["source"]["base_url"] = base_url
    r = client.submit(body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == "source.base_url" and "OUTBOUND_ALLOW" in error["message"], error


def test_cancel_while_retrying_ends_the_job_at_once(client: ExportClient, service: RuntimeProcess) -> None:
    # A long backoff: without the cancel event, the job would sleep for minutes before noticing.
    options = {"retry": {"first_retry_interval_ms": 60_000, "max_attempts": 1}, "failure_threshold": 10}
    body = unreachable_body("unreach-cancel", **options)
    body["source"]["auth_secret"] = "token-that-must-be-deleted"
    job = client.start(body)
    client.wait(job, timeout=60, states={"retrying"})
    r = client.http.delete(client.rt.url(f"api/exports/{job}"))
    assert r.status_code == 202, r.text
    status = client.wait(job, timeout=20)
    assert status["state"] == "cancelled", status
    assert status["finished"] is not None
    assert_parts_terminal(status)
    assert secrets_left(service, job) == []


def test_cancel_while_a_type_waits_to_retry_ends_the_job_at_once(
    client: ExportClient, service: RuntimeProcess, fhir: FhirTestServer
) -> None:
    fhir.faults.add(Fault(kind="status", status=503, resource_type="Observation", times=None))
    try:
        options = {"retry": {"first_retry_interval_ms": 60_000, "max_attempts": 1}, "failure_threshold": 10}
        job = client.start(export_body(fhir, ["Observation"], "type-retry-cancel", "t", **options))
        client.wait(job, timeout=60, states={"retrying"})
        assert client.http.delete(client.rt.url(f"api/exports/{job}")).status_code == 202
        status = client.wait(job, timeout=20)  # not the 60 s backoff
    finally:
        fhir.faults.clear()
    assert status["state"] == "cancelled", status
    assert status["progress"]["Observation"]["state"] == "cancelled"


def test_terminated_orchestration_shows_failed_with_the_reason(
    client: ExportClient, service: RuntimeProcess, fhir: FhirTestServer, azurite: Azurite
) -> None:
    fhir.faults.add(Fault(kind="slow", delay_s=0.3, times=None, match=lambda r: r.resource_type == "Patient"))
    try:
        job = client.start(export_body(fhir, ["Patient"], "term", "t", page_size=5))
        client.wait(job, timeout=60, states={"running"})
        assert (
            durable_api(service, f"instances/{job}/terminate", reason="stuck, ops ticket 42").status_code
            == 202
        )
        status = client.wait(job, timeout=30)
    finally:
        fhir.faults.clear()
    assert status["state"] == "failed", status
    assert "terminated by an operator" in status["last_error"] and "ops ticket 42" in status["last_error"]
    assert_parts_terminal(status)


def test_terminated_type_orchestration_fails_that_type_and_the_job_ends(
    client: ExportClient, service: RuntimeProcess, fhir: FhirTestServer, azurite: Azurite
) -> None:
    fhir.faults.add(Fault(kind="slow", delay_s=0.3, times=None, match=lambda r: r.resource_type == "Patient"))
    try:
        job = client.start(export_body(fhir, ["Patient", "Observation"], "term-type", "t", page_size=5,
                                       parallel_types=2))  # fmt: skip
        client.wait(job, timeout=60, states={"running"})
        r = durable_api(service, f"instances/{job}:Patient/terminate", reason="bad type")
        assert r.status_code == 202, r.text
        status = client.wait(job, timeout=60)
    finally:
        fhir.faults.clear()
    assert status["state"] == "failed", status
    assert "Patient" in status["last_error"] and "terminated" in status["last_error"]
    assert_readable(status["last_error"])
    assert status["progress"]["Observation"]["state"] == "succeeded"
    assert_parts_terminal(status)


def test_cancel_of_a_job_whose_orchestration_was_purged_still_ends_it(
    client: ExportClient, service: RuntimeProcess
) -> None:
    options = {"retry": {"first_retry_interval_ms": 60_000, "max_attempts": 1}, "failure_threshold": 10}
    job = client.start(unreachable_body("purged", **options))
    client.wait(job, timeout=60, states={"retrying"})
    assert durable_api(service, f"instances/{job}/terminate", reason="cleanup").status_code == 202
    wait_until(lambda: durable_api(service, f"instances/{job}").status_code == 200, timeout=20,
               message="the instance purged")  # fmt: skip
    r = client.http.delete(client.rt.url(f"api/exports/{job}"))
    assert r.status_code == 202, r.text
    assert r.json()["state"] == "cancelled", r.json()
    assert client.status(job)["state"] == "cancelled"


def test_after_a_cancel_no_deleted_file_is_listed_and_every_part_is_terminal(
    client: ExportClient, fhir: FhirTestServer, azurite: Azurite
) -> None:
    fhir.faults.add(Fault(kind="slow", delay_s=0.2, times=None))
    try:
        job = client.start(export_body(fhir, ["Patient", "Observation"], "cancel-view", "x", page_size=5,
                                       commit_every_pages=1))  # fmt: skip
        wait_until(lambda: client.status(job)["output"], timeout=60, message="a file committed")
        assert client.http.delete(client.rt.url(f"api/exports/{job}")).status_code == 202
        status = client.wait(job, timeout=60)
    finally:
        fhir.faults.clear()
    assert status["state"] == "cancelled", status
    assert status["output"] == []
    assert all(p["files"] == 0 for p in status["progress"].values()), status["progress"]
    assert_parts_terminal(status)
    assert blobs(azurite, "cancel-view", "x/") == []


@pytest.mark.parametrize("answer", ["404", "html"])
def test_a_source_without_metadata_still_exports(
    client: ExportClient, fhir: FhirTestServer, azurite: Azurite, answer: str
) -> None:
    on_metadata = {"times": None, "match": lambda r: r.path.endswith("/metadata")}
    fault = {"404": Fault(kind="status", status=404, diagnostics="no such endpoint", **on_metadata),
             "html": Fault(kind="broken", broken="json", **on_metadata)}[answer]  # fmt: skip
    fhir.faults.add(fault)
    try:
        job = client.start(export_body(fhir, ["Patient"], f"nometa-{answer}", "m", page_size=20))
        status = client.wait(job, timeout=60)
    finally:
        fhir.faults.clear()
    assert status["state"] == "succeeded", status
    assert validate(azurite, fhir, ["Patient"], f"nometa-{answer}", "m").ok
    assert "a Patient search works" in client.rt.log_text()


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, Path(tmp_path_factory.mktemp("always-ends")))
    try:
        yield rt
    finally:
        rt.stop()


def test_an_operator_retry_keeps_what_succeeded_and_resumes_from_the_last_commit(
    client: ExportClient, service: RuntimeProcess, fhir: FhirTestServer, azurite: Azurite
) -> None:
    fhir.faults.add(Fault(kind="status", status=403, diagnostics="Observation denied for now",
                          resource_type="Observation", page=4, times=None))  # fmt: skip
    body = export_body(fhir, ["Patient", "Observation"], "retry", "r", page_size=10, commit_every_pages=1)
    body["source"]["auth_secret"] = "token-for-the-retry"
    try:
        job = client.start(body)
        failed = client.wait(job, timeout=60)
        assert failed["state"] == "failed" and "Observation denied for now" in failed["last_error"], failed
        assert failed["progress"]["Patient"]["state"] == "succeeded"
        retry_url = client.rt.url(f"api/jobs/{job}/retry")
        missing = client.http.post(retry_url, json={})
        assert missing.status_code == 400 and missing.json()["error"]["field"] == "source.auth_secret"
    finally:
        fhir.faults.clear()
    served = len(list(fhir.requests))
    # The export API's own retry is the job API's (the 400 above came from /api/jobs).
    r = client.http.post(
        client.rt.url(f"api/exports/{job}/retry"), json={"source": {"auth_secret": "token-for-the-retry"}}
    )
    assert r.status_code == 202 and r.json()["state"] == "queued", r.text
    status = client.wait(job, timeout=60)
    assert status["state"] == "succeeded", status
    again = list(fhir.requests)[served:]
    assert not [q for q in again if q.resource_type == "Patient"]  # kept, not exported again
    observation_pages = sorted(q.page for q in again if q.resource_type == "Observation" and q.page)
    assert observation_pages and observation_pages[0] == 4, observation_pages  # from the last commit
    assert validate(azurite, fhir, ["Patient", "Observation"], "retry", "r").ok
    assert secrets_left(service, job) == []
    conflict = client.http.post(retry_url)
    assert conflict.status_code == 409 and "only a failed job" in conflict.json()["error"]["message"]
    assert client.http.post(client.rt.url("api/jobs/nope/retry")).status_code == 404
    assert client.http.post(client.rt.url("api/exports/nope/retry")).status_code == 404
