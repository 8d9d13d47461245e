"""`make run` as a service: kill -9 of its runtime in the middle of an export, and nobody acts.

The supervisor in scripts/devservers.py starts the runtime again while Azurite and maildev stay
up; the durable store lost nothing, so the export resumes from its last commit and ends
`succeeded` with every resource exactly once. Free ports and a temporary state folder, as in
tests/e2e/test_make_run.py (whose `make run` harness this reuses).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from azure.storage.blob import ContainerClient

from scripts.devservers import Ports, azurite_connection_string
from shared.validation import iter_export_files, validate_export
from tests.e2e.test_make_run import MakeRun
from tests.support.export_env import export_body
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite, pytest.mark.slow]

TYPES = ["Patient", "Observation"]


@pytest.fixture
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 200, "Observation": 150}, resource_bytes=500) as server:
        server.faults.add(Fault(kind="slow", delay_s=0.1, times=None))  # a job long enough to kill mid-way
        yield server


@pytest.fixture
def make_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[MakeRun]:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    # The environment wins over the developer's local.settings.json: what this test relies on.
    monkeypatch.setenv("OUTBOUND_ALLOW", "127.0.0.1,localhost")
    monkeypatch.setenv("KEY_VAULT_URL", "")
    run = MakeRun(tmp_path / "state", tmp_path / "make-run.log")
    run.start()
    assert run.process is not None
    try:
        yield run
    finally:
        if run.process.poll() is None:
            run.descendants()
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(timeout=10)
        for proc in run.seen:
            if proc.is_running():
                proc.kill()


def server(run: MakeRun, marker: str) -> psutil.Process | None:
    return next((p for p in run.descendants() if marker in " ".join(p.cmdline())), None)


def healthy(run: MakeRun) -> bool:
    assert run.process is not None
    assert run.process.poll() is None, f"make run exited:\n{run.output()[-4000:]}"
    return httpx.get(f"{run.base_url}/api/health", timeout=5).status_code == 200


def test_kill_9_of_the_runtime_under_make_run_and_the_export_still_finishes(
    make_run: MakeRun, fhir: FhirTestServer
) -> None:
    wait_until(lambda: healthy(make_run), timeout=120, interval=0.25, message="make run healthy")
    key = json.loads((make_run.state_dir / "runtime" / "keys.json").read_text())["functionKeys"]["default"]
    http = httpx.Client(base_url=make_run.base_url, headers={"x-functions-key": key}, timeout=30)
    body = export_body(fhir, TYPES, "supervised", "run-1", page_size=10, commit_every_pages=2)
    response = http.post("/api/exports", json=body)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    def status() -> dict[str, Any]:
        r = http.get(f"/api/exports/{job_id}")
        assert r.status_code == 200, r.text
        return dict(r.json())

    wait_until(
        lambda: status()["progress"]["Patient"]["resources"] >= 20, timeout=120, message="pages committed"
    )
    runtime, azurite, maildev = (server(make_run, m) for m in ("-m selfhost", "azurite", "maildev"))
    assert runtime and azurite and maildev, [" ".join(p.cmdline()) for p in make_run.descendants()]
    assert status()["state"] in ("running", "retrying")

    os.kill(runtime.pid, signal.SIGKILL)  # the horrible death; nobody acts after this

    def ended() -> dict[str, Any] | None:
        current = status()
        return current if current["state"] in ("succeeded", "failed", "cancelled") else None

    done = wait_until(ended, timeout=300, interval=0.5, message=f"export {job_id} ends after the restart")
    assert done is not None and done["state"] == "succeeded", done
    output = make_run.output()
    assert "devservers: runtime died (killed by SIGKILL)" in output, output[-4000:]
    assert "devservers: runtime restarted" in output
    restarted = server(make_run, "-m selfhost")
    assert restarted is not None and restarted.pid != runtime.pid
    for kept in (azurite, maildev):  # the same processes all along
        assert kept.is_running() and kept.status() != psutil.STATUS_ZOMBIE
    ports = Ports(
        blob=make_run.ports["AZURITE_BLOB_PORT"],
        queue=make_run.ports["AZURITE_QUEUE_PORT"],
        table=make_run.ports["AZURITE_TABLE_PORT"],
    )
    with ContainerClient.from_connection_string(azurite_connection_string(ports), "supervised") as container:
        report = validate_export(fhir.expected_ids(TYPES), iter_export_files(container, "run-1/"))
    assert report.ok, report
    http.close()
