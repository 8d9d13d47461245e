"""Waiting a job's turn (`orchestrators.common.wait_turn`) and the gate before each kind starts,
driven step by step with a fake orchestration context: what is scheduled, and what comes out."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any

import pytest

from orchestrators import batch, export, session
from orchestrators.common import ADMITTED, CANCELLED, CONTINUE, WAITS_PER_EXECUTION, wait_turn
from shared import batch_tasks, export_tasks, session_tasks
from shared.admission import ADMIT_ACTIVITY, Admission
from shared.batch_contracts import parse_batch_request
from shared.batch_tasks import BatchInput
from shared.contracts import parse_export_request
from shared.export_tasks import CANCEL_EVENT, JobInput
from shared.session_tasks import SessionInput

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


@dataclass(eq=False)
class Task:
    kind: str  # activity, timer, event, any
    name: str = ""
    payload: Any = None
    children: list[Task] = field(default_factory=list)
    result: Any = None  # what the task completed with (an Exception when it failed)


class FakeContext:
    """What the orchestrators call on a DurableOrchestrationContext, recording each task."""

    def __init__(self, given: Any = None) -> None:
        self.given = given
        self.current_utc_datetime = T0
        self.is_replaying = False
        self.scheduled: list[Task] = []
        self.continued: Any = None

    def get_input(self) -> Any:
        return self.given

    def _task(self, task: Task) -> Task:
        self.scheduled.append(task)
        return task

    def call_activity_with_retry(self, name: str, retry: Any, payload: Any) -> Task:
        return self._task(Task("activity", name, payload))

    def call_activity(self, name: str, payload: Any) -> Task:
        return self._task(Task("activity", name, payload))

    def create_timer(self, fire_at: dt.datetime) -> Task:
        return self._task(Task("timer", payload=(fire_at - T0).total_seconds()))

    def wait_for_external_event(self, name: str) -> Task:
        return self._task(Task("event", name))

    def task_any(self, tasks: list[Task]) -> Task:
        return Task("any", children=list(tasks))

    def continue_as_new(self, value: Any) -> None:
        self.continued = value

    def activities(self, name: str) -> list[Task]:
        return [t for t in self.scheduled if t.kind == "activity" and t.name == name]


def drive(steps: Generator[Any, Any, Any], answer: Callable[[Task], Any]) -> Any:
    """Run an orchestrator generator, answering each task it yields; its return value."""
    value = None
    try:
        while True:
            value = answer(steps.send(value))
    except StopIteration as stop:
        return stop.value


def answers(*admissions: Admission | Exception, cancel_at: int | None = None) -> Callable[[Task], Any]:
    """Answer the admission asks in turn (an Exception: the ask failed), let every wait's timer
    fire, and every other activity with None; at race `cancel_at` (1: the first ask, 2: the wait
    after it, ...) the cancel event wins instead."""
    asks = iter(admissions)
    races = 0

    def answer(task: Task) -> Any:
        nonlocal races
        if task.kind == "any":
            races += 1
            if races == cancel_at:
                return next(t for t in task.children if t.kind == "event")
            winner = next(t for t in task.children if t.kind in ("activity", "timer"))
            if winner.kind == "activity":
                given = next(asks)
                winner.result = given if isinstance(given, Exception) else given.to_dict()
            return winner
        return None

    return answer


WAIT = Admission(reason="waiting for 1 earlier job of a@example.com", wait_s=2.0)


def test_an_admitted_job_asks_once_and_waits_for_nothing() -> None:
    context = FakeContext()
    assert drive(wait_turn(context, "j1"), answers(Admission(admitted=True))) == ADMITTED
    assert [t.payload for t in context.activities(ADMIT_ACTIVITY)] == [{"job_id": "j1", "run": 0}]
    assert not [t for t in context.scheduled if t.kind == "timer"]


def test_a_waiting_job_waits_what_the_activity_says_then_starts() -> None:
    context = FakeContext()
    longer = Admission(reason="still", wait_s=7.5)
    assert drive(wait_turn(context, "j1"), answers(WAIT, longer, Admission(admitted=True))) == ADMITTED
    assert [t.payload for t in context.scheduled if t.kind == "timer"] == [2.0, 7.5]
    assert len(context.activities(ADMIT_ACTIVITY)) == 3


def test_one_cancel_listener_serves_every_wait_and_a_cancel_ends_the_wait() -> None:
    context = FakeContext()
    assert drive(wait_turn(context, "j1"), answers(WAIT, WAIT, WAIT, cancel_at=4)) == CANCELLED
    events = [t for t in context.scheduled if t.kind == "event"]
    assert [e.name for e in events] == [CANCEL_EVENT]
    assert len(context.activities(ADMIT_ACTIVITY)) == 2


def test_a_cancel_event_during_an_ask_ends_the_wait() -> None:
    context = FakeContext()
    assert drive(wait_turn(context, "j1"), answers(WAIT, WAIT, cancel_at=3)) == CANCELLED
    assert len(context.activities(ADMIT_ACTIVITY)) == 2


def test_an_ask_whose_retries_ran_out_fails_the_orchestration() -> None:
    with pytest.raises(RuntimeError, match="storage down"):
        drive(wait_turn(FakeContext(), "j1"), answers(WAIT, RuntimeError("storage down")))


def test_a_cancel_seen_by_the_activity_ends_the_wait() -> None:
    context = FakeContext()
    assert drive(wait_turn(context, "j1"), answers(WAIT, Admission(cancelled=True))) == CANCELLED


def test_a_long_wait_continues_as_new_after_a_bounded_number_of_asks() -> None:
    context = FakeContext()
    assert drive(wait_turn(context, "j1"), answers(*[WAIT] * WAITS_PER_EXECUTION)) == CONTINUE
    assert len(context.activities(ADMIT_ACTIVITY)) == WAITS_PER_EXECUTION


def orchestrator(builder: Any) -> Callable[[FakeContext], Generator[Any, Any, Any]]:
    function: Callable[[FakeContext], Generator[Any, Any, Any]] = (
        builder._function.get_user_function().orchestrator_function
    )
    return function


def export_input(**changes: Any) -> dict[str, Any]:
    body = {"source": {"kind": "fhir", "base_url": "http://127.0.0.1:9/fhir", "types": ["Patient"]},
            "destination": {"kind": "blob", "container": "exports"},
            "requested_by": "a@example.com"}  # fmt: skip
    request, _ = parse_export_request(body)
    return JobInput(job_id="e1", request=request, **{"waits_turn": True, **changes}).to_dict()


def batch_input(**changes: Any) -> dict[str, Any]:
    body = {"source": {"kind": "blob", "container": "acquired"}, "items": ["a.dcm"],
            "destination": {"kind": "blob", "container": "delivered"},
            "requested_by": "a@example.com"}  # fmt: skip
    request, _, _ = parse_batch_request(body, job_id="b1", default_container="exports")
    return BatchInput(job_id="b1", request=request, **{"waits_turn": True, **changes}).to_dict()


def session_input(**changes: Any) -> dict[str, Any]:
    return SessionInput(
        job_id="s1", app="recon", session_id="x1", **{"waits_turn": True, **changes}
    ).to_dict()


KINDS = [
    pytest.param(export.export_job, export_input, export_tasks.FINISH_ACTIVITY, id="export"),
    pytest.param(batch.batch_job, batch_input, batch_tasks.FINISH_ACTIVITY, id="batch"),
    pytest.param(session.session_job, session_input, session_tasks.FINISH_ACTIVITY, id="session"),
]


@pytest.mark.parametrize(("builder", "given", "finish"), KINDS)
def test_every_kind_waits_its_turn_before_anything_else(builder: Any, given: Any, finish: str) -> None:
    context = FakeContext(given(run=2))
    orchestrator(builder)(context).send(None)
    [ask] = [t for t in context.scheduled if t.kind == "activity"]
    assert ask.name == ADMIT_ACTIVITY and ask.payload["run"] == 2  # an operator's retry, a reopened session


@pytest.mark.parametrize(("builder", "given", "finish"), KINDS)
def test_a_cancel_while_waiting_ends_every_kind_cancelled(builder: Any, given: Any, finish: str) -> None:
    context = FakeContext(given())
    result = drive(orchestrator(builder)(context), answers(WAIT, cancel_at=2))
    assert result["state"] == "cancelled"
    [done] = context.activities(finish)
    assert done.payload["state"] == "cancelled"
    assert [t.name for t in context.scheduled if t.kind == "activity"] == [ADMIT_ACTIVITY, finish]


@pytest.mark.parametrize(("builder", "given", "finish"), KINDS)
def test_a_long_wait_continues_every_kind_as_new_with_its_input(
    builder: Any, given: Any, finish: str
) -> None:
    context = FakeContext(given())
    assert drive(orchestrator(builder)(context), answers(*[WAIT] * WAITS_PER_EXECUTION)) is None
    assert context.continued == given()
    assert not context.activities(finish)


@pytest.mark.parametrize(
    ("builder", "given"),
    [
        pytest.param(export.export_job, lambda: export_input(consecutive_failures=1), id="export-retrying"),
        pytest.param(batch.batch_job, lambda: batch_input(consecutive_failures=1), id="batch-retrying"),
        pytest.param(batch.batch_job, lambda: batch_input(prepared=True), id="batch-next-window"),
        pytest.param(session.session_job, lambda: session_input(started=True), id="session-started"),
    ],
)
def test_a_job_already_admitted_does_not_ask_again(builder: Any, given: Any) -> None:
    context = FakeContext(given())
    orchestrator(builder)(context).send(None)
    scheduled = [t.name for t in context.scheduled if t.kind == "activity"]
    assert scheduled and ADMIT_ACTIVITY not in scheduled


@pytest.mark.parametrize(("builder", "given", "finish"), KINDS)
def test_a_run_started_before_the_caps_replays_without_the_wait(
    builder: Any, given: Any, finish: str
) -> None:
    """An input without `waits_turn` (an orchestration in flight when the caps were deployed)
    schedules what it scheduled then: its first task is not the admission activity."""
    context = FakeContext(given(waits_turn=False))
    orchestrator(builder)(context).send(None)
    assert [t.name for t in context.scheduled if t.kind == "activity"][:1] != [ADMIT_ACTIVITY]
    assert context.scheduled, "it went on with its work"
