"""The durable engine driving the real SDK in-process (no HTTP): workflow semantics on both stores."""

from __future__ import annotations

import json
import time

import pytest

from tests.support.durable_harness import EngineHarness
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime


def test_chaining(harness: EngineHarness) -> None:
    iid = harness.start("chaining")
    assert harness.output(iid) == ["Hello Tokyo", "Hello Seattle", "Hello London"]


def test_fan_out_200(harness: EngineHarness) -> None:
    iid = harness.start("fan_out", 200)
    assert harness.output(iid, timeout=60) == sum(i * 2 for i in range(200))
    assert sorted(v for n, v in harness.invoker.calls if n == "double") == list(range(200))


def test_retry_succeeds_on_third_attempt(harness: EngineHarness) -> None:
    iid = harness.start("retry_ok", "k1")
    assert harness.output(iid) == "ok on attempt 3"
    assert sum(1 for n, _ in harness.invoker.calls if n == "flaky") == 3


def test_retry_exhausts(harness: EngineHarness) -> None:
    iid = harness.start("retry_exhaust", "x1")
    out = harness.output(iid)
    assert out.startswith("caught: ") and "flaky failure #3" in out
    assert sum(1 for n, _ in harness.invoker.calls if n == "flaky") == 3


def test_timer(harness: EngineHarness) -> None:
    iid = harness.start("timer", 1)
    out = harness.output(iid)
    assert out["waited"] >= 1.0 and out["after"] == "Hello after timer"


def test_external_event_arrives(harness: EngineHarness) -> None:
    iid = harness.start("approval", 30)
    harness.wait(iid, statuses=frozenset({"Running"}))
    harness.engine.raise_event(iid, "Approval", json.dumps({"ok": True}))
    assert harness.output(iid) == {"approved": {"ok": True}}


def test_external_event_times_out(harness: EngineHarness) -> None:
    iid = harness.start("approval", 1)
    assert harness.output(iid) == "timeout"


def test_sub_orchestrations(harness: EngineHarness) -> None:
    iid = harness.start("parent", instance_id="p1")
    assert harness.output(iid) == {"first": ["Hello Tokyo", "Hello Seattle", "Hello London"], "second": 20}
    child = harness.store.get_instance("p1-child")
    assert child is not None and child.status == "Completed" and child.parent_instance_id == "p1"


def test_continue_as_new_keeps_history_bounded(harness: EngineHarness) -> None:
    iid = harness.start("counter", {"n": 0, "limit": 120})
    assert harness.output(iid, timeout=60) == 120
    assert len(harness.store.get_history(iid)) < 20


def test_orchestrator_failure(harness: EngineHarness) -> None:
    iid = harness.start("fails")
    inst = harness.wait(iid)
    assert inst.status == "Failed"
    assert "boom in orchestrator" in json.loads(inst.output)


def test_unknown_activity_fails_instance(harness: EngineHarness) -> None:
    inst = harness.wait(harness.start("unknown_activity"))
    assert inst.status == "Failed"
    assert "no_such_activity" in inst.output and "doesn't exist" in inst.output


def test_terminate_suspend_resume(harness: EngineHarness) -> None:
    iid = harness.start("status_steps")
    harness.wait(iid, statuses=frozenset({"Running"}))
    harness.engine.control(iid, "suspend", "pause")
    harness.wait(iid, statuses=frozenset({"Suspended"}))
    harness.engine.raise_event(iid, "Go", "null")
    time.sleep(0.3)  # a negative check: the event must not move a suspended instance on
    assert harness.store.get_instance(iid).status == "Suspended"  # type: ignore[union-attr]
    harness.engine.control(iid, "resume", "go")
    assert harness.output(iid) == "done"
    iid2 = harness.start("approval", 60)
    harness.wait(iid2, statuses=frozenset({"Running"}))
    harness.engine.control(iid2, "terminate", "enough")
    inst = harness.wait(iid2)
    assert inst.status == "Terminated" and json.loads(inst.output) == "enough"


def test_custom_status(harness: EngineHarness) -> None:
    iid = harness.start("status_steps")

    def at_step_2() -> bool:
        inst = harness.store.get_instance(iid)
        return bool(inst and inst.custom_status and json.loads(inst.custom_status) == {"step": 2})

    wait_until(at_step_2, timeout=10, interval=0.02, message="custom status never reached step 2")
    harness.engine.raise_event(iid, "Go", "null")
    harness.output(iid)
    assert json.loads(harness.store.get_instance(iid).custom_status) == {"step": 3}  # type: ignore[union-attr]


def test_custom_status_over_16kb_fails_with_clear_message(harness: EngineHarness) -> None:
    inst = harness.wait(harness.start("big_status"))
    assert inst.status == "Failed"
    assert "must not exceed 16 KB" in json.loads(inst.output)
