"""Starting a job's orchestration (`control.durable.start`) against a fake durable client: a
retry whose failed run's instance is still completing waits for it instead of failing the job,
a start whose answer was lost counts as started, and a start the runtime refuses abandons the job."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any, cast

import pytest

from control import durable
from shared import job_api
from shared.deps import Deps
from shared.export_tasks import JobInput

pytestmark = pytest.mark.unit


@dataclass
class Status:
    runtime_status: str
    input_: dict[str, Any]


@dataclass
class FakeClient:
    """An instance that runs `run` for `running_for` more status calls; start_new is refused while
    it runs (as the runtime refuses to replace a running instance), and `refuse` refuses always."""

    run: int = 0
    running_for: int = 0
    refuse: bool = False
    started: list[dict[str, Any]] = field(default_factory=list)

    async def start_new(self, name: str, instance_id: str, input_: dict[str, Any]) -> str:
        if self.refuse or self.running_for > 0:
            raise RuntimeError("500: an instance with this id is running")
        self.started.append(input_)
        return instance_id

    async def get_status(self, instance_id: str) -> Status:
        if self.running_for <= 0:
            return Status("Failed", {"run": self.run})
        self.running_for -= 1
        return Status("Running", {"run": self.run})


@pytest.fixture
def abandoned(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    reasons: list[str] = []
    monkeypatch.setattr(job_api, "abandon", lambda submitted, deps, reason: reasons.append(reason))
    monkeypatch.setattr(durable, "_DYING_WAIT_S", 0)
    return reasons


def submitted(run: int) -> job_api.Submitted:
    request = {"source": {"base_url": "https://fhir.example/", "types": ["Patient"]},
               "destination": {"kind": "blob", "container": "exported"}, "requested_by": "a@example.com"}  # fmt: skip
    job = JobInput.from_dict({"job_id": "j1", "request": request, "run": run})
    return job_api.Submitted(job=job, record={"id": "j1"})


def start(client: FakeClient, run: int) -> None:
    asyncio.run(durable.start(cast(Any, client), submitted(run), cast(Deps, None)))


def test_a_retry_waits_for_the_failed_runs_instance_to_complete(abandoned: list[str]) -> None:
    client = FakeClient(run=0, running_for=5)
    start(client, run=1)
    assert [s["run"] for s in client.started] == [1]
    assert abandoned == []


def test_a_start_whose_answer_was_lost_counts_as_started(abandoned: list[str]) -> None:
    client = FakeClient(run=1, running_for=10**6)
    start(client, run=1)
    assert client.started == [] and abandoned == []


def test_a_refused_start_abandons_the_job(abandoned: list[str]) -> None:
    client = FakeClient(refuse=True)
    with pytest.raises(durable.StartFailed):
        start(client, run=0)
    assert abandoned == ["the export could not be started"]


def test_an_instance_that_never_completes_fails_the_retry_in_the_end(abandoned: list[str]) -> None:
    client = FakeClient(run=0, running_for=10**6)
    with pytest.raises(durable.StartFailed):
        start(client, run=1)
    assert abandoned == ["the export could not be started"]
