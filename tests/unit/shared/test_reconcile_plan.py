"""Reconciling a job record with its orchestration, and settling parts when a job ends (pure)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from shared.jobs import JobState
from shared.reconcile_plan import ORPHAN_GRACE, RuntimeStatus, decide, settle_part

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
STALL = dt.timedelta(minutes=120)


def stamp(ago: dt.timedelta) -> str:
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%SZ")


def record(state: str = "running", ago: dt.timedelta = dt.timedelta(minutes=1)) -> dict[str, Any]:
    return {"id": "j1", "state": state, "created": stamp(ago), "updated": stamp(ago)}


def judge(rec: dict[str, Any], runtime: RuntimeStatus, cancel: bool = False, parts: Any = ()) -> Any:
    return decide(rec, parts, cancel, runtime, now=NOW, stall_after=STALL)


@pytest.mark.parametrize("status", ["Running", "Pending", "ContinuedAsNew", "Suspended"])
def test_a_live_orchestration_is_left_alone(status: str) -> None:
    assert judge(record(), RuntimeStatus(status)) is None


def test_terminal_records_are_never_changed() -> None:
    for state in ("succeeded", "failed", "cancelled"):
        assert judge(record(state), RuntimeStatus("Failed", "boom")) is None


def test_a_failed_orchestration_fails_the_job_with_a_readable_reason() -> None:
    v = judge(
        record(), RuntimeStatus("Failed", "Orchestrator function 'export_job' failed: TypeError: bad \n tb")
    )
    assert v.state is JobState.FAILED and v.reason == "the job stopped on an internal error: bad"


def test_termination_by_an_operator() -> None:
    v = judge(record("retrying"), RuntimeStatus("Terminated", "ticket 42"))
    assert v.state is JobState.FAILED and v.reason == "the job was terminated by an operator: ticket 42"
    assert judge(record(), RuntimeStatus("Terminated", "x"), cancel=True).state is JobState.CANCELLED
    assert judge(record(), RuntimeStatus("Failed", "x"), cancel=True).state is JobState.CANCELLED


def test_a_missing_orchestration_after_the_grace_period() -> None:
    young = record("queued", ORPHAN_GRACE / 2)
    assert judge(young, RuntimeStatus(None)) is None  # it may be starting right now
    assert judge(record("running", ORPHAN_GRACE / 2), RuntimeStatus(None)) is None  # a restart's 404
    v = judge(record("running", ORPHAN_GRACE * 2), RuntimeStatus(None))
    assert v.state is JobState.FAILED and "no longer exists" in v.reason
    # a cancel asked of a job whose orchestration is gone (purged) ends it at once
    v = judge(record("retrying", dt.timedelta(seconds=5)), RuntimeStatus(None), cancel=True)
    assert v.state is JobState.CANCELLED


def test_a_completed_orchestration_gives_its_own_outcome() -> None:
    v = judge(record(), RuntimeStatus("Completed", {"state": "succeeded", "error": None}))
    assert v.state is JobState.SUCCEEDED
    assert judge(record(), RuntimeStatus("Completed", None)).state is JobState.FAILED


def test_a_hung_job_is_failed_and_terminated_past_the_deadline() -> None:
    old = record("running", STALL + dt.timedelta(minutes=1))
    recent_part = [{"state": "running", "updated": stamp(dt.timedelta(minutes=3))}]
    assert judge(old, RuntimeStatus("Running"), parts=recent_part) is None  # a part moved lately
    v = judge(old, RuntimeStatus("Running"))
    assert v.state is JobState.FAILED and v.terminate and "120 minutes" in v.reason
    assert judge(old, RuntimeStatus("Running"), cancel=True).state is JobState.CANCELLED


def test_settling_parts_of_a_cancelled_job_lists_no_file() -> None:
    done = {"state": "succeeded", "files": [{"name": "Patient-1.ndjson"}], "resources": 5, "bytes": 10}
    settled = settle_part(done, JobState.CANCELLED, None)
    assert settled["state"] == "cancelled" and settled["files"] == [] and settled["resources"] == 0
    assert settle_part({"state": "failed", "last_error": "x"}, JobState.CANCELLED, None)["state"] == "failed"
    assert settle_part({}, JobState.CANCELLED, None)["state"] == "cancelled"


def test_settling_parts_of_a_failed_job() -> None:
    running = settle_part({"state": "running"}, JobState.FAILED, "source gone")
    assert running == {"state": "failed", "last_error": "source gone"}
    own = settle_part({"state": "retrying", "last_error": "HTTP 503"}, JobState.FAILED, "other")
    assert own["last_error"] == "HTTP 503"
    never = settle_part({}, JobState.FAILED, "x")
    assert never["state"] == "cancelled" and "not started" in never["last_error"]
    assert settle_part({"state": "succeeded", "files": [1]}, JobState.FAILED, "x")["files"] == [1]
