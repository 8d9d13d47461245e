"""The canonical Durable Functions patterns, as the Python v2 docs write them, run unchanged and
are driven the way a person would: plain HTTP to the starter, then the status URLs it returns."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

from tests.support.apps import app_root
from tests.support.azurite import Azurite
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.runtime, pytest.mark.azurite]


@pytest.fixture(scope="module")
def runtime(azurite: Azurite, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    tmp = tmp_path_factory.mktemp("patterns")
    rt = RuntimeProcess(
        app_root("patterns_app"), tmp / "state", env={"AzureWebJobsStorage": azurite.connection_string}
    )
    rt.start()
    yield rt
    rt.stop()


def start(rt: RuntimeProcess, name: str, payload: object = None, method: str = "POST") -> dict[str, str]:
    r = httpx.request(method, rt.url(f"api/orchestrators/{name}"), json=payload)
    assert r.status_code == 202, r.text
    return dict(r.json())


def finished(urls: dict[str, str], timeout: float = 60) -> dict[str, object]:
    def done() -> dict[str, object] | None:
        r = httpx.get(urls["statusQueryGetUri"])
        return dict(r.json()) if r.status_code == 200 else None

    return wait_until(done, timeout=timeout, interval=0.1, message=urls["id"])


def test_chaining(runtime: RuntimeProcess) -> None:
    out = finished(start(runtime, "hello_sequence", method="GET"))
    assert out["runtimeStatus"] == "Completed"
    assert out["output"] == ["Hello Lisbon!", "Hello Nairobi!", "Hello Osaka!"]


def test_fan_out_fan_in_copies_files_to_blob(
    runtime: RuntimeProcess, azurite: Azurite, tmp_path: Path
) -> None:
    for i in range(12):
        (tmp_path / f"file{i}.txt").write_bytes(b"x" * (100 + i))
    out = finished(start(runtime, "backup_folder", str(tmp_path)))
    assert out["output"] == sum(100 + i for i in range(12))
    with ContainerClient.from_connection_string(azurite.connection_string, "backups") as c:
        assert {b.name for b in c.list_blobs()} >= {f"file{i}.txt" for i in range(12)}


def test_human_interaction_approved_and_escalated(runtime: RuntimeProcess) -> None:
    urls = start(runtime, "approval_workflow", 30)
    wait_until(lambda: httpx.get(urls["statusQueryGetUri"]).json()["runtimeStatus"] == "Running", timeout=20)
    r = httpx.post(urls["sendEventPostUri"].replace("{eventName}", "ApprovalEvent"), json="approved by Ana")
    assert r.status_code == 202
    assert finished(urls)["output"] == "decision: approved by Ana"
    assert finished(start(runtime, "approval_workflow", 1))["output"] == "decision: escalated"


def test_monitor_polls_until_condition(runtime: RuntimeProcess, tmp_path: Path) -> None:
    flag = tmp_path / "done.flag"
    urls = start(runtime, "job_monitor", {"flag": str(flag), "interval_s": 1, "expiry_s": 60})
    wait_until(lambda: httpx.get(urls["statusQueryGetUri"]).json()["runtimeStatus"] == "Running", timeout=20)
    flag.write_text("ok")
    out = finished(urls)["output"]
    assert out["state"] == "done" and out["checks"] >= 1  # type: ignore[index]
    expired = finished(
        start(runtime, "job_monitor", {"flag": str(tmp_path / "never"), "interval_s": 1, "expiry_s": 2})
    )
    assert expired["output"]["state"] == "expired"  # type: ignore[index]
