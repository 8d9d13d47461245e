"""Retrying a job's step under its retry policy (`orchestrators.common.call_retrying`), driven
step by step with a fake orchestration context: the attempts and the waits between them, the
last failure raised, and a cancel during a wait ending it at once; the export's and the batch's
preparation and the export's pages and commits use it for runs started since, and keep the
runtime's retries for older runs."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import pytest

from orchestrators import batch, export
from orchestrators.common import CANCELLED, call_retrying
from shared import batch_tasks, export_tasks
from shared._strict import replace
from shared.contracts import PageResult, TypeCheckpoint, file_name
from shared.destinations.base import block_id
from shared.export_tasks import CANCEL_EVENT, PageOutcome
from shared.retry import RetryPolicy
from tests.unit.orchestrators.test_wait_turn import FakeContext, Task, batch_input, export_input, orchestrator

pytestmark = pytest.mark.unit

POLICY = RetryPolicy(first_retry_interval_ms=60_000, max_attempts=3)


class Context(FakeContext):
    def call_activity_with_retry(self, name: str, retry: Any, payload: Any) -> Task:
        return self._task(Task("activity-with-retry", name, payload))

    def call_sub_orchestrator(self, name: str, payload: Any, instance_id: str) -> Task:
        return self._task(Task("orchestration", name, payload))


def drive(steps: Generator[Any, Any, Any], answer: Callable[[Task], Any]) -> Any:
    """Run the generator, answering each task it yields (an Exception answer is thrown in)."""
    value: Any = None
    try:
        while True:
            task = steps.throw(value) if isinstance(value, Exception) else steps.send(value)
            value = answer(task)
    except StopIteration as stop:
        return stop.value


def attempts(*results: Any, cancel_wait: int | None = None) -> Callable[[Task], Any]:
    """Answer the activity's attempts in turn (record writes with None); let each wait's timer
    fire, except wait `cancel_wait` (1: the first), where the cancel event wins."""
    given, waits = iter(results), 0

    def answer(task: Task) -> Any:
        nonlocal waits
        if task.kind == "any":
            waits += 1
            return next(t for t in task.children if t.kind == ("event" if waits == cancel_wait else "timer"))
        return None if task.kind == "activity-with-retry" else next(given)

    return answer


def kinds(context: Context, kind: str) -> list[Task]:
    return [t for t in context.scheduled if t.kind == kind]


def test_a_step_that_works_at_the_third_attempt_waits_the_interval_twice() -> None:
    context = Context()
    down = RuntimeError("connection refused")
    answer = drive(call_retrying(context, "step", {"n": 1}, POLICY), attempts(down, down, {"ok": True}))
    assert answer == {"ok": True}
    assert [t.payload for t in kinds(context, "activity")] == [{"n": 1}] * 3
    assert [t.payload for t in kinds(context, "timer")] == [60.0, 60.0]
    assert [t.name for t in kinds(context, "event")] == [CANCEL_EVENT] * 2


def test_when_every_attempt_fails_the_last_failure_is_raised() -> None:
    context = Context()
    with pytest.raises(RuntimeError, match="third"):
        drive(call_retrying(context, "step", {}, POLICY),
              attempts(RuntimeError("first"), RuntimeError("second"), RuntimeError("third")))  # fmt: skip
    assert len(kinds(context, "activity")) == 3 and len(kinds(context, "timer")) == 2


def test_a_cancel_during_a_wait_ends_it_at_once() -> None:
    context = Context()
    answer = drive(call_retrying(context, "step", {}, POLICY), attempts(RuntimeError("down"), cancel_wait=1))
    assert answer == CANCELLED
    assert len(kinds(context, "activity")) == 1  # no attempt after the cancel


def test_one_attempt_means_no_wait() -> None:
    context = Context()
    with pytest.raises(RuntimeError):
        drive(call_retrying(context, "step", {}, RetryPolicy(1000, 1)), attempts(RuntimeError("down")))
    assert not kinds(context, "timer")


@pytest.mark.parametrize(
    ("builder", "given", "prepare"),
    [(export.export_job, export_input, export_tasks.PREPARE_ACTIVITY),
     (batch.batch_job, batch_input, batch_tasks.PREPARE_ACTIVITY)],
)  # fmt: skip
def test_the_preparation_retries_cancellably_only_in_runs_started_since(
    builder: Any, given: Any, prepare: str
) -> None:
    for waits_turn, expected in [(True, "activity"), (False, "activity-with-retry")]:
        context = Context(given(waits_turn=waits_turn))
        steps = orchestrator(builder)(context)
        task = steps.send(None)
        if waits_turn:  # the admission ask first
            task.children[0].result = {"admitted": True}
            task = steps.send(task.children[0])
        assert (task.kind, task.name) == (expected, prepare)


def type_input(**changes: Any) -> dict[str, Any]:
    job = export_tasks.JobInput.from_dict(export_input())
    checkpoint = TypeCheckpoint(type="Patient")
    return export_tasks.TypeInput(
        job_id="e1", request=job.request, checkpoint=checkpoint, **changes
    ).to_dict()


def test_a_cancel_while_a_page_waits_to_be_tried_again_ends_the_type_at_once() -> None:
    context = Context(type_input(cancellable_retries=True))
    outcome = drive(orchestrator(export.export_type)(context), attempts(RuntimeError("down"), cancel_wait=1))
    assert outcome["state"] == "cancelled"
    assert [t.name for t in kinds(context, "activity")] == [export_tasks.PAGE_ACTIVITY]
    [noted] = kinds(context, "activity-with-retry")  # the part says why it waits, before the wait
    assert noted.payload["part"] == "Patient" and noted.payload["part_update"] == {
        "state": "retrying",
        "last_error": "down",
    }
    older = Context(type_input())  # a type started before: the runtime's retries
    assert orchestrator(export.export_type)(older).send(None).kind == "activity-with-retry"


def test_the_types_of_a_run_started_since_retry_their_pages_cancellably() -> None:
    context = Context(export_input(consecutive_failures=1))  # admitted before: straight to its steps
    steps = orchestrator(export.export_job)(context)
    prepare = steps.send(None)
    record = steps.send({})  # prepared: records the job running
    assert prepare.name == export_tasks.PREPARE_ACTIVITY and record.kind == "activity-with-retry"
    steps.send(None)
    [child] = kinds(context, "orchestration")
    assert child.name == export_tasks.TYPE_ORCHESTRATOR and child.payload["cancellable_retries"] is True


def test_a_cancel_while_a_commit_waits_to_be_tried_again_ends_the_type_at_once() -> None:
    job = export_tasks.JobInput.from_dict(export_input())
    request = replace(job.request, options=replace(job.request.options, commit_every_pages=1))
    given = export_tasks.TypeInput(job_id="e1", request=request, checkpoint=TypeCheckpoint(type="Patient"),
                                   cancellable_retries=True).to_dict()  # fmt: skip
    page = PageResult(type="Patient", page=1, file_name=file_name("Patient", 1),
                      block_id=block_id("Patient", 1, 1), size_bytes=10, resources=1, next_cursor="c2")  # fmt: skip
    context = Context(given)
    answers = attempts(PageOutcome(result=page).to_dict(), RuntimeError("storage down"), cancel_wait=1)
    outcome = drive(orchestrator(export.export_type)(context), answers)
    assert outcome["state"] == "cancelled"
    assert [t.name for t in kinds(context, "activity")] == [
        export_tasks.PAGE_ACTIVITY,
        export_tasks.COMMIT_ACTIVITY,
    ]
    [noted] = kinds(context, "activity-with-retry")
    assert noted.payload["part_update"]["last_error"] == "storage down"
