"""End to end, the hard paths: rollover, kill -9 mid-export, transient and permanent source faults,
the failure threshold, cancel, and secret deletion in every outcome. Real servers throughout:
the runtime running function_app.py, Azurite, and the FHIR test server with injected faults."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, export_body, start_service, validate
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite, pytest.mark.slow]

TOKEN = "source-token-e2e"
FAST_RETRY = {"first_retry_interval_ms": 100, "max_attempts": 3}


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    # ~1 KB resources make file sizes predictable; the source demands a bearer token.
    with FhirTestServer({"Patient": 120, "Observation": 90, "Encounter": 40}, resource_bytes=1000,
                        required_token=TOKEN) as server:  # fmt: skip
        yield server


@pytest.fixture
def service(azurite: Azurite, fhir: FhirTestServer, tmp_path: Path) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path)
    try:
        yield rt
    finally:
        rt.stop()


def body(
    fhir: FhirTestServer, azurite: Azurite, types: list[str], container: str, prefix: str, **options: Any
) -> dict[str, Any]:
    b = export_body(fhir, types, container, prefix, **options)
    b["source"]["auth_secret"] = TOKEN
    b["destination"]["secret"] = azurite.connection_string
    return b


def secrets_left(service: RuntimeProcess, job_id: str) -> list[str]:
    folder = Path(service.env["LOCAL_SECRETS_PATH"])
    return [p.name for p in folder.glob("*") if job_id in p.name] if folder.exists() else []


def blobs(azurite: Azurite, container: str, prefix: str) -> list[str]:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as c:
        if not c.exists():
            return []
        return sorted(b.name for b in c.list_blobs(name_starts_with=prefix))


def test_rollover_spans_three_files_per_type(client: ExportClient, azurite: Azurite, fhir: FhirTestServer,
                                             service: RuntimeProcess) -> None:  # fmt: skip
    types = ["Patient", "Observation"]
    job = client.start(body(fhir, azurite, types, "rollover", "r", page_size=10, max_file_bytes=16 * 1024,
                            commit_every_pages=3))  # fmt: skip
    status = client.wait(job)
    assert status["state"] == "succeeded", status
    for t in types:
        names = [f["name"] for f in status["output"] if f["type"] == t]
        assert len(names) >= 4, names  # three rollovers at least
        assert names == [f"{t}-{i}.ndjson" for i in range(1, len(names) + 1)]
    report = validate(azurite, fhir, types, "rollover", "r")
    assert report.ok, report
    assert secrets_left(service, job) == []


def test_kill_9_mid_export_resumes_without_loss_or_duplicates(client: ExportClient, azurite: Azurite,
                                                              fhir: FhirTestServer, service: RuntimeProcess) -> None:  # fmt: skip
    fhir.faults.add(Fault(kind="slow", delay_s=0.15, times=None))
    types = ["Patient", "Observation", "Encounter"]
    job = client.start(
        body(fhir, azurite, types, "crash", "c", page_size=10, commit_every_pages=2, parallel_types=2)
    )
    wait_until(lambda: client.status(job)["progress"]["Patient"]["resources"] >= 20, timeout=60,
               message="some pages committed")  # fmt: skip
    service.kill()
    service.start()
    status = client.wait(job, timeout=180)
    assert status["state"] == "succeeded", status
    report = validate(azurite, fhir, types, "crash", "c")
    assert report.ok, report
    assert secrets_left(service, job) == []


def test_transient_source_faults_end_in_success(
    client: ExportClient, azurite: Azurite, fhir: FhirTestServer
) -> None:
    fhir.faults.add(Fault(kind="status", status=503, resource_type="Patient", page=2, times=2))
    fhir.faults.add(
        Fault(kind="status", status=429, retry_after="1", resource_type="Observation", page=3, times=1)
    )
    fhir.faults.add(Fault(kind="drop", resource_type="Encounter", page=1, times=1))
    types = ["Patient", "Observation", "Encounter"]
    job = client.start(body(fhir, azurite, types, "flaky", "f", page_size=20, retry=FAST_RETRY))
    status = client.wait(job, timeout=120)
    assert status["state"] == "succeeded", status
    assert not [f for f in fhir.faults.pending() if f.fault.times]  # every fault actually fired
    report = validate(azurite, fhir, types, "flaky", "f")
    assert report.ok, report


def test_permanent_fault_fails_with_the_servers_reason(client: ExportClient, azurite: Azurite,
                                                       fhir: FhirTestServer, service: RuntimeProcess) -> None:  # fmt: skip
    fhir.faults.add(Fault(kind="status", status=403, diagnostics="Encounter access denied for this client",
                          resource_type="Encounter", page=1, times=None))  # fmt: skip
    job = client.start(
        body(fhir, azurite, ["Patient", "Encounter"], "perm", "p", page_size=20, retry=FAST_RETRY)
    )
    status = client.wait(job, timeout=60)
    assert status["state"] == "failed"
    assert "Encounter access denied for this client" in status["last_error"]
    encounter_pages = [r for r in fhir.requests if r.resource_type == "Encounter"]
    assert len(encounter_pages) == 1  # permanent: not retried
    assert secrets_left(service, job) == []
    assert TOKEN not in json.dumps(status) and azurite.connection_string not in json.dumps(status)


def test_failure_threshold_is_respected(client: ExportClient, azurite: Azurite, fhir: FhirTestServer,
                                        service: RuntimeProcess) -> None:  # fmt: skip
    fhir.faults.add(Fault(kind="status", status=503, resource_type="Observation", page=1, times=None))
    options = {"retry": {"first_retry_interval_ms": 100, "max_attempts": 2}, "failure_threshold": 3}
    job = client.start(body(fhir, azurite, ["Observation"], "thresh", "t", page_size=20, **options))
    status = client.wait(job, timeout=120)
    assert status["state"] == "failed", status
    assert "3 consecutive failed attempts" in status["last_error"]
    assert status["attempts"]["types"]["Observation"] == 3
    tries = [r for r in fhir.requests if r.resource_type == "Observation"]
    assert len(tries) == 3 * 2  # threshold x attempts per durable retry policy
    assert secrets_left(service, job) == []


def test_retrying_state_is_visible(client: ExportClient, azurite: Azurite, fhir: FhirTestServer) -> None:
    fhir.faults.add(Fault(kind="status", status=503, resource_type="Patient", page=1, times=2))
    options = {"retry": {"first_retry_interval_ms": 100, "max_attempts": 1}, "failure_threshold": 5}
    job = client.start(body(fhir, azurite, ["Patient"], "visible", "v", page_size=40, **options))
    seen = client.wait(job, timeout=60, states={"retrying", "succeeded", "failed"})
    assert seen["state"] == "retrying", seen
    assert client.wait(job, timeout=60)["state"] == "succeeded"


def test_a_page_waiting_a_long_retry_interval_says_why_and_a_cancel_ends_it_at_once(
    client: ExportClient, azurite: Azurite, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    fhir.faults.add(Fault(kind="status", status=503, diagnostics="down for maintenance",
                          resource_type="Patient", page=2, times=None))  # fmt: skip
    options = {"retry": {"first_retry_interval_ms": 600_000, "max_attempts": 5}, "commit_every_pages": 1}
    job = client.start(body(fhir, azurite, ["Patient"], "longwait", "w", page_size=40, **options))
    seen = client.wait(job, timeout=60, states={"retrying", "succeeded", "failed"})  # at the first failure
    assert seen["state"] == "retrying" and seen["progress"]["Patient"]["state"] == "retrying", seen
    assert "503" in seen["last_error"] and "down for maintenance" in seen["last_error"], seen
    r = client.http.delete(client.rt.url(f"api/exports/{job}"))
    assert r.status_code == 202
    status = client.wait(job, timeout=30)  # not the 10 minutes of the interval
    assert status["state"] == "cancelled", status
    assert blobs(azurite, "longwait", "w/") == [] and secrets_left(service, job) == []


def test_cancel_stops_work_deletes_partial_files_and_secrets(client: ExportClient, azurite: Azurite,
                                                            fhir: FhirTestServer, service: RuntimeProcess) -> None:  # fmt: skip
    fhir.faults.add(Fault(kind="slow", delay_s=0.2, times=None))
    job = client.start(body(fhir, azurite, ["Patient", "Observation"], "cancel", "x", page_size=10,
                            commit_every_pages=2))  # fmt: skip
    wait_until(lambda: blobs(azurite, "cancel", "x/"), timeout=60, message="some data written")
    r = client.http.delete(client.rt.url(f"api/exports/{job}"))
    assert r.status_code == 202 and r.json()["cancel_requested"] is True
    status = client.wait(job, timeout=60)
    assert status["state"] == "cancelled"
    served = fhir.requests_served
    assert blobs(azurite, "cancel", "x/") == []
    assert secrets_left(service, job) == []
    assert fhir.requests_served == served  # nothing more is read after the end
    again = client.http.delete(client.rt.url(f"api/exports/{job}"))
    assert again.status_code == 202 and again.json()["state"] == "cancelled"


def test_malformed_page_fails_the_job_naming_the_page(
    client: ExportClient, azurite: Azurite, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    fhir.faults.add(Fault(kind="broken", broken="json", resource_type="Observation", page=2, times=None))
    job = client.start(body(fhir, azurite, ["Observation"], "broken", "b", page_size=20, retry=FAST_RETRY))
    status = client.wait(job, timeout=60)
    assert status["state"] == "failed"
    assert "Observation" in status["last_error"] and "ct=" in status["last_error"]  # the page's URL
    assert len([r for r in fhir.requests if r.resource_type == "Observation" and r.page == 2]) == 1
    assert secrets_left(service, job) == []


def test_secrets_never_reach_logs_history_records_or_status(
    client: ExportClient, azurite: Azurite, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    job = client.start(body(fhir, azurite, ["Patient"], "nosecret", "s", page_size=40))
    status = client.wait(job)
    assert status["state"] == "succeeded"
    assert TOKEN not in json.dumps(status)
    assert TOKEN not in service.log_text()
    for path in (service.state_dir / "durable").glob("*"):  # the orchestration history (db and WAL)
        assert TOKEN.encode() not in path.read_bytes(), path.name
    with ContainerClient.from_connection_string(azurite.connection_string, "export-jobs") as jobs:
        for blob in jobs.list_blobs(name_starts_with=f"jobs/{job}"):
            assert TOKEN.encode() not in jobs.download_blob(blob.name).readall(), blob.name
