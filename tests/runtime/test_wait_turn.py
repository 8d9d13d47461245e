"""`orchestrators.common.wait_turn` on the durable engine in-process with the real SDK: waits
replay deterministically, a cancel event ends a wait (also one raised while the admission
activity runs), and a long wait continues as new with bounded history."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import azure.durable_functions as df
import pytest

from orchestrators.common import CONTINUE, WAITS_PER_EXECUTION, wait_turn
from selfhost.durable.memory_store import MemoryStore
from shared.admission import ADMIT_ACTIVITY, Admission
from shared.export_tasks import CANCEL_EVENT
from tests.support.durable_harness import EngineHarness
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime

app = df.DFApp()
# What the fake admission activity answers, per job: the answers in turn (the last one repeats).
script: dict[str, list[Admission]] = {}
asked: dict[str, int] = {}
hold = threading.Event()  # set: the activity answers at once; clear: it waits (a slow store)


@app.orchestration_trigger(context_name="context")
def turn_probe(context: df.DurableOrchestrationContext) -> Any:
    given = context.get_input()
    turn = yield from wait_turn(context, given["job_id"])
    if turn == CONTINUE and given["executions"] < 2:
        context.continue_as_new({**given, "executions": given["executions"] + 1})
        return None
    return {"turn": turn, "executions": given["executions"]}


@app.activity_trigger(input_name="task", activity=ADMIT_ACTIVITY)
def job_admit(task: dict[str, Any]) -> dict[str, Any]:
    job_id = task["job_id"]
    asked[job_id] = asked.get(job_id, 0) + 1
    hold.wait(30)
    answers = script[job_id]
    return answers[min(asked[job_id], len(answers)) - 1].to_dict()


@pytest.fixture(scope="module")
def engine() -> Iterator[EngineHarness]:
    with EngineHarness(app, MemoryStore()) as h:  # one per app: its functions are indexed once
        yield h


@pytest.fixture
def harness(engine: EngineHarness) -> Iterator[EngineHarness]:
    hold.set()
    yield engine
    hold.set()


def start(harness: EngineHarness, job_id: str, *answers: Admission) -> str:
    script[job_id] = list(answers)
    asked[job_id] = 0
    return harness.start("turn_probe", {"job_id": job_id, "executions": 0}, instance_id=job_id)


def waiting(seconds: float) -> Admission:
    return Admission(reason="waiting for 1 earlier job of a@example.com", wait_s=seconds)


def test_a_job_waits_then_starts(harness: EngineHarness) -> None:
    iid = start(harness, "w1", waiting(0.1), waiting(0.1), Admission(admitted=True))
    assert harness.output(iid) == {"turn": "admitted", "executions": 0}
    assert asked["w1"] == 3


def test_a_cancel_event_ends_a_long_wait_at_once(harness: EngineHarness) -> None:
    iid = start(harness, "w2", waiting(60))
    wait_until(lambda: asked["w2"] == 1, timeout=10, message="the first ask")
    time.sleep(0.2)  # the timer is set
    began = time.monotonic()
    harness.engine.raise_event(iid, CANCEL_EVENT, None)
    assert harness.output(iid, timeout=10) == {"turn": "cancelled", "executions": 0}
    assert time.monotonic() - began < 5


def test_a_cancel_raised_while_the_activity_runs_ends_the_next_wait_at_once(harness: EngineHarness) -> None:
    hold.clear()
    iid = start(harness, "w3", waiting(60))
    wait_until(lambda: asked["w3"] == 1, timeout=10, message="the ask under way")
    harness.engine.raise_event(iid, CANCEL_EVENT, None)
    time.sleep(0.3)  # the event is in the history before the activity's answer
    hold.set()
    assert harness.output(iid, timeout=10) == {"turn": "cancelled", "executions": 0}
    assert asked["w3"] == 1


def test_a_long_wait_continues_as_new_with_bounded_history(harness: EngineHarness) -> None:
    iid = start(harness, "w4", waiting(0.01))
    assert harness.output(iid, timeout=60) == {"turn": "continue", "executions": 2}
    assert asked["w4"] == 3 * WAITS_PER_EXECUTION
    events = harness.store.get_history(iid)
    assert len(events) < 10 * WAITS_PER_EXECUTION, len(events)  # one execution's asks, not three
    assert json.dumps(events)  # the history is plain JSON
