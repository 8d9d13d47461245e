"""The export orchestrations (seed 002's ExportJobTask, made durable).

`export_job`, one instance per job (instance id = job id):
 0. wait the job's turn under the caps on running jobs (`orchestrators.common.wait_turn`): it
    stays `queued`, saying why; a cancel ends it `cancelled`; a long wait continues as new;
 1. prepare (secrets, destination and source connection checks) with the job's retry policy;
    a transient failure that outlives the retries counts one failure: under the threshold the
    job is `retrying` and tries again after a backoff (continue-as-new), at it the job fails;
 2. run one `export_type` sub-orchestration per resource type, at most `parallel_types` at once;
    a `cancel` event stops starting new ones (running ones see the cancel marker at their next page);
 3. fold the outcomes into the final state; `export_finish` deletes partial files on cancel,
    always deletes the job's secrets, and writes the outcome to the job record.

`export_type`, one instance per (job, type), input = its last committed checkpoint:
 1. read the next page of the current search and stage it as a block (activity); a type may take
    several searches (ORed `_typeFilter`s x patient chunks), the checkpoint says which one and
    the activity says which comes next; honour Retry-After with a durable timer;
 2. decide (pure) whether to commit: every `commit_every_pages`, at rollover, at the end;
 3. after a commit, continue-as-new with the new checkpoint: history stays bounded, and a crash
    or failure resumes from the last commit; re-run pages restage the same block ids; after
    `commit_every_pages` pages with nothing to commit (empty searches), continue-as-new too;
 4. a transient failure past the retries counts one consecutive failure: retry from the last
    commit after a backoff, or fail the type at the threshold; a permanent one fails it at once.

Deterministic: no I/O, clock or randomness here; times come from the context.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    CANCELLED,
    CONTINUE,
    SERVICE_RETRY,
    Gen,
    call_retrying,
    record_job,
    record_part,
    wait_turn,
    wait_unless_cancelled,
)
from shared import export_plan as plan
from shared._strict import replace
from shared.contracts import CommitResult, CommitTask, ExportRequest, PageTask, TypeCheckpoint
from shared.error_text import readable
from shared.export_tasks import (
    CANCEL_EVENT,
    COMMIT_ACTIVITY,
    FINISH_ACTIVITY,
    JOB_ORCHESTRATOR,
    PAGE_ACTIVITY,
    PREPARE_ACTIVITY,
    TYPE_ORCHESTRATOR,
    CommitAndRecord,
    FinishTask,
    JobInput,
    PageOutcome,
    StepOutcome,
    TypeInput,
    type_instance_id,
)
from shared.jobs import JobState
from shared.jobstore import JobUpdate, PartUpdate

bp = df.Blueprint()
log = logging.getLogger(__name__)


def _retry(request: ExportRequest) -> df.RetryOptions:
    return df.RetryOptions(**request.options.retry.as_retry_options_kwargs())


@bp.orchestration_trigger(context_name="context", orchestration=JOB_ORCHESTRATOR)
def export_job(context: df.DurableOrchestrationContext) -> Gen:
    job = JobInput.from_dict(context.get_input())
    request, options = job.request, job.request.options
    if job.waits_turn and job.consecutive_failures == 0:  # one retrying its preparation was admitted
        turn = yield from wait_turn(context, job.job_id, job.run)
        if turn == CANCELLED:
            return (yield from _finish(context, job, "cancelled", [], None))
        if turn == CONTINUE:
            context.continue_as_new(job.to_dict())
            return None
    try:
        if job.waits_turn:  # a run started since retries became cancellable (see JobInput)
            raw = yield from call_retrying(context, PREPARE_ACTIVITY, job.to_dict(), options.retry)
        else:
            raw = yield context.call_activity_with_retry(PREPARE_ACTIVITY, _retry(request), job.to_dict())
    except Exception as exc:  # noqa: BLE001 - a transient failure that outlived its retries
        error = readable(exc)
        failures = job.consecutive_failures + 1
        if failures >= options.failure_threshold:
            return (yield from _finish(context, job, "failed", [], plan.preparation_error(failures, error)))
        yield record_job(
            context, job.job_id, JobUpdate(JobState.RETRYING, attempts=failures, last_error=error)
        )
        wait_s = plan.failure_wait_s(failures, options.retry.first_retry_interval_ms)
        if (yield from wait_unless_cancelled(context, wait_s)):
            return (yield from _finish(context, job, "cancelled", [], None))
        context.continue_as_new(replace(job, consecutive_failures=failures).to_dict())
        return None
    prepared = StepOutcome(cancelled=True) if raw == CANCELLED else StepOutcome.from_dict(raw)
    if prepared.cancelled:
        return (yield from _finish(context, job, "cancelled", [], None))
    if prepared.error:
        return (yield from _finish(context, job, "failed", [], prepared.error))

    started = context.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
    yield record_job(context, job.job_id, JobUpdate(JobState.RUNNING, started=started))
    done_before = {str(o["type"]) for o in job.completed}  # succeeded in an earlier run
    pending = [t for t in request.source.types if t not in done_before]
    running: list[tuple[Any, str]] = []
    outcomes: list[dict[str, Any]] = [dict(o) for o in job.completed]
    cancel_event = context.wait_for_external_event(CANCEL_EVENT)
    cancel_requested = False
    while pending or running:
        while pending and len(running) < options.parallel_types:
            resource_type = pending.pop(0)
            start = job.resume.get(resource_type) or TypeCheckpoint(type=resource_type)
            child = TypeInput(job_id=job.job_id, request=request, checkpoint=start,
                              cancellable_retries=job.waits_turn)  # fmt: skip
            task = context.call_sub_orchestrator(
                TYPE_ORCHESTRATOR, child.to_dict(), type_instance_id(job.job_id, resource_type, job.run)
            )
            running.append((task, resource_type))
        waiting = [t for t, _ in running] + ([] if cancel_requested else [cancel_event])
        winner = yield context.task_any(waiting)
        if winner == cancel_event:
            cancel_requested = True
            pending.clear()
            continue
        for entry in [e for e in running if e[0] == winner]:
            running.remove(entry)
            outcome = _child_outcome(winner, entry[1])
            outcomes.append(outcome)
            if outcome["state"] == "failed":
                pending.clear()  # the job fails: start nothing new; running types finish
    state = plan.job_state(outcomes, cancel_requested)
    files = [name for o in outcomes for name in o["files"]] if state == "cancelled" else []
    return (yield from _finish(context, job, state, outcomes, plan.job_error(outcomes), files))


def _child_outcome(task: Any, resource_type: str) -> dict[str, Any]:
    """A type's outcome; a sub-orchestration that failed or was terminated counts as failed."""
    if isinstance(task.result, Exception):
        return plan.type_outcome(TypeCheckpoint(type=resource_type), "failed", readable(task.result))
    return dict(task.result)


def _finish(
    context: df.DurableOrchestrationContext,
    job: JobInput,
    state: str,
    outcomes: list[dict[str, Any]],
    error: str | None,
    delete_files: list[str] | None = None,
) -> Gen:
    outcome = {
        "state": state,
        "error": error,
        "resources": sum(o["resources"] for o in outcomes),
        "types": {o["type"]: o["state"] for o in outcomes},
    }
    task = FinishTask(job_id=job.job_id, request=job.request, state=state, outcome=outcome,
                      delete_files=tuple(delete_files or ()))  # fmt: skip
    yield context.call_activity_with_retry(FINISH_ACTIVITY, SERVICE_RETRY, task.to_dict())
    if not context.is_replaying:
        log.info("export job %s ended %s", job.job_id, state)
    return outcome


@bp.orchestration_trigger(context_name="context", orchestration=TYPE_ORCHESTRATOR)
def export_type(context: df.DurableOrchestrationContext) -> Gen:
    given = TypeInput.from_dict(context.get_input())
    request, options = given.request, given.request.options
    last_commit = plan.start(given.checkpoint)
    cp = last_commit
    pages_since_commit = 0
    throttled = 0
    while True:
        task = PageTask(
            job_id=given.job_id,
            request=request,
            type=cp.type,
            cursor=cp.cursor,
            page=cp.pages_done + 1,
            file_sequence=cp.files[-1].sequence,
            query=cp.query,
        )
        try:
            raw = yield from _attempt(context, given, PAGE_ACTIVITY, task.to_dict())
        except Exception as exc:  # noqa: BLE001 - a transient failure that outlived its retries
            return (yield from _type_failure(context, given, last_commit, readable(exc)))
        if raw == CANCELLED:
            return plan.type_outcome(cp, "cancelled")
        out = PageOutcome.from_dict(raw)
        if out.cancelled:
            return plan.type_outcome(cp, "cancelled")
        if out.retry_after_s is not None:
            throttled += 1
            if throttled > options.retry.max_attempts:
                return (
                    yield from _type_failure(
                        context, given, last_commit, "the source kept asking to wait (Retry-After)"
                    )
                )
            if (yield from wait_unless_cancelled(context, plan.retry_after_wait_s(out.retry_after_s))):
                return plan.type_outcome(cp, "cancelled")
            continue
        throttled = 0
        assert out.result is not None
        if out.result.error:
            yield record_part(
                context, given.job_id, cp.type, PartUpdate("failed", last_error=out.result.error)
            )
            return plan.type_outcome(last_commit, "failed", out.result.error)
        cp, decision = plan.after_page(cp, out.result, options, pages_since_commit)
        pages_since_commit += 1
        if decision.commit:
            after = plan.committed(cp, decision)
            work = CommitAndRecord(
                commit=CommitTask(job_id=given.job_id, request=request, file=cp.files[-1]), checkpoint=after
            )
            try:
                raw = yield from _attempt(context, given, COMMIT_ACTIVITY, work.to_dict())
            except Exception as exc:  # noqa: BLE001 - a transient failure that outlived its retries
                return (yield from _type_failure(context, given, last_commit, readable(exc)))
            if raw == CANCELLED:
                return plan.type_outcome(last_commit, "cancelled")
            result = CommitResult.from_dict(raw)
            if result.error:
                yield record_part(
                    context, given.job_id, cp.type, PartUpdate("failed", last_error=result.error)
                )
                return plan.type_outcome(last_commit, "failed", result.error)
            if decision.done:
                return plan.type_outcome(after, "succeeded")
            context.continue_as_new(replace(given, checkpoint=after).to_dict())
            return None
        if decision.checkpoint:  # pages read, nothing staged: a checkpoint needs no commit
            resume = replace(cp, consecutive_failures=0)
            context.continue_as_new(replace(given, checkpoint=resume).to_dict())
            return None
        if decision.done:  # the last page brought nothing new to commit
            done = replace(cp, done=True)
            if done.files[-1].committed_resources:
                # Commit the last file again, now marked done: idempotent for Blob, and the moment
                # a PUT destination sends the complete file.
                last_file = CommitTask(job_id=given.job_id, request=request, file=done.files[-1])
                work = CommitAndRecord(commit=last_file, checkpoint=done)
                try:
                    raw = yield from _attempt(context, given, COMMIT_ACTIVITY, work.to_dict())
                except Exception as exc:  # noqa: BLE001 - a transient failure that outlived its retries
                    return (yield from _type_failure(context, given, last_commit, readable(exc)))
                if raw == CANCELLED:
                    return plan.type_outcome(last_commit, "cancelled")
                if (result := CommitResult.from_dict(raw)).error:
                    yield record_part(
                        context, given.job_id, cp.type, PartUpdate("failed", last_error=result.error)
                    )
                    return plan.type_outcome(last_commit, "failed", result.error)
            yield record_part(context, given.job_id, cp.type, PartUpdate("succeeded", pages=done.pages_done))
            return plan.type_outcome(done, "succeeded")


def _attempt(context: df.DurableOrchestrationContext, given: TypeInput, activity: str, work: Any) -> Gen:
    """A page read or a commit under the job's retry policy. A type started since retries
    became cancellable waits between attempts through `call_retrying` (its answer may be
    CANCELLED), saying why; an older one replays with the runtime's retries. Only a failed
    attempt is ever left behind, never one in flight, so a cancel in a commit's wait is safe."""
    if given.cancellable_retries:
        note = functools.partial(_note_retrying, context, given)
        return (yield from call_retrying(context, activity, work, given.request.options.retry, note))
    return (yield context.call_activity_with_retry(activity, _retry(given.request), work))


def _note_retrying(context: df.DurableOrchestrationContext, given: TypeInput, error: Exception) -> Any:
    """The type's part `retrying` with why, while a page or a commit waits to be tried again
    (the next commit writes it `running` again, as after any failure)."""
    update = PartUpdate("retrying", last_error=readable(error))
    return record_part(context, given.job_id, given.checkpoint.type, update)


def _type_failure(
    context: df.DurableOrchestrationContext, given: TypeInput, last_commit: TypeCheckpoint, error: str
) -> Gen:
    failures = last_commit.consecutive_failures + 1
    threshold = given.request.options.failure_threshold
    if failures >= threshold:
        update = PartUpdate("failed", consecutive_failures=failures, last_error=error)
        yield record_part(context, given.job_id, last_commit.type, update)
        return plan.type_outcome(
            last_commit, "failed", f"{failures} consecutive failed attempts; last: {error}"
        )
    update = PartUpdate("retrying", consecutive_failures=failures, last_error=error)
    yield record_part(context, given.job_id, last_commit.type, update)
    wait_s = plan.failure_wait_s(failures, given.request.options.retry.first_retry_interval_ms)
    if (yield from wait_unless_cancelled(context, wait_s)):
        return plan.type_outcome(last_commit, "cancelled")
    resume = replace(last_commit, consecutive_failures=failures)
    context.continue_as_new(replace(given, checkpoint=resume).to_dict())
    return None
