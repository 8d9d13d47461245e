"""The batch orchestrations (seed 001: files sent to a server in the background, as one job).

`batch_job`, one instance per batch (instance id = job id), input `BatchInput`:
 0. wait the batch's turn under the caps on running jobs (`orchestrators.common.wait_turn`): it
    stays `queued`, saying why; a cancel ends it `cancelled`; a long wait continues as new;
 1. prepare once (secrets, the destination answers), like an export: a transient failure that
    outlives its retries is a `retrying` job that tries again after a backoff, up to 3 times;
 2. ask `batch_next` for the next window of item indices (a retry run skips what succeeded);
 3. run one `batch_item` per index, at most `options.concurrency` at once; a cancel event stops
    starting new ones, and so does reaching `options.failure_threshold` failed items;
 4. after the window, continue as new with the cursor and the counts (history stays bounded);
 5. at the end, `batch_finish` deletes the secrets, settles the items under way, records the end.

`batch_item`, one instance per item: call `batch_transfer`; a transient failure records the item
`retrying` and waits (a cancel event ends the wait) until `options.retry.max_attempts`.

Deterministic: no I/O, clock or randomness here; times come from the context.
"""

from __future__ import annotations

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
    wait_turn,
    wait_unless_cancelled,
    with_retries,
)
from shared import export_plan
from shared._strict import replace
from shared.batch_tasks import (
    BATCH_ORCHESTRATOR,
    FINISH_ACTIVITY,
    ITEM_ORCHESTRATOR,
    NEXT_ACTIVITY,
    PREPARE_ACTIVITY,
    TRANSFER_ACTIVITY,
    BatchInput,
    ItemInput,
    ItemOutcome,
    NextItems,
    final_state,
    item_instance_id,
)
from shared.batching import FinishBatch, part_name
from shared.error_text import readable
from shared.export_tasks import CANCEL_EVENT, StepOutcome
from shared.jobs import JobState
from shared.jobstore import JobUpdate

bp = df.Blueprint()
log = logging.getLogger(__name__)

PREPARE_THRESHOLD = 3  # failed preparations before the batch fails


@bp.orchestration_trigger(context_name="context", orchestration=BATCH_ORCHESTRATOR)
def batch_job(context: df.DurableOrchestrationContext) -> Gen:
    job = BatchInput.from_dict(context.get_input())
    options = job.request.options
    retry = df.RetryOptions(**options.retry.as_retry_options_kwargs())
    if not job.prepared:
        if job.waits_turn and job.consecutive_failures == 0:  # one retrying its preparation was admitted
            turn = yield from wait_turn(context, job.job_id, job.run)
            if turn == CANCELLED:
                return (yield from _finish(context, job, JobState.CANCELLED, None))
            if turn == CONTINUE:
                context.continue_as_new(job.to_dict())
                return None
        try:
            if job.waits_turn:  # a run started since retries became cancellable (see BatchInput)
                raw = yield from call_retrying(context, PREPARE_ACTIVITY, job.to_dict(), options.retry)
            else:
                raw = yield context.call_activity_with_retry(PREPARE_ACTIVITY, retry, job.to_dict())
        except Exception as exc:  # noqa: BLE001 - a transient failure that outlived its retries
            failures = job.consecutive_failures + 1
            error = readable(exc)
            if failures >= PREPARE_THRESHOLD:
                return (
                    yield from _finish(
                        context, job, JobState.FAILED, export_plan.preparation_error(failures, error)
                    )
                )
            yield record_job(
                context, job.job_id, JobUpdate(JobState.RETRYING, attempts=failures, last_error=error)
            )
            wait_s = export_plan.failure_wait_s(failures, options.retry.first_retry_interval_ms)
            if (yield from wait_unless_cancelled(context, wait_s)):
                return (yield from _finish(context, job, JobState.CANCELLED, None))
            context.continue_as_new(replace(job, consecutive_failures=failures).to_dict())
            return None
        prepared = StepOutcome(cancelled=True) if raw == CANCELLED else StepOutcome.from_dict(raw)
        if prepared.cancelled:
            return (yield from _finish(context, job, JobState.CANCELLED, None))
        if prepared.error:
            return (yield from _finish(context, job, JobState.FAILED, prepared.error))
        started = context.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%SZ")
        yield record_job(context, job.job_id, JobUpdate(JobState.RUNNING, started=started))
        job = replace(job, prepared=True)

    window = NextItems.from_dict(
        (yield context.call_activity_with_retry(NEXT_ACTIVITY, SERVICE_RETRY, job.to_dict()))
    )
    pending = list(window.indices)
    running: list[Any] = []
    counts = job.counts
    cancel_event = context.wait_for_external_event(CANCEL_EVENT)
    cancelled = window.cancelled
    threshold = options.failure_threshold
    while pending or running:
        stop = cancelled or (threshold is not None and counts.failed >= threshold)
        while pending and not stop and len(running) < options.concurrency:
            index = pending.pop(0)
            item = ItemInput(job_id=job.job_id, request=job.request, index=index)
            running.append(context.call_sub_orchestrator(ITEM_ORCHESTRATOR, item.to_dict(),
                                                         item_instance_id(job.job_id, index, job.run)))  # fmt: skip
        if stop:
            pending.clear()
            if not running:
                break
        winner = yield context.task_any(running + ([] if cancelled else [cancel_event]))
        if winner == cancel_event:
            cancelled = True
            continue
        running.remove(winner)
        outcome = (ItemOutcome(index=-1, state="failed", error=readable(winner.result)) if isinstance(winner.result, Exception)
                   else ItemOutcome.from_dict(winner.result))  # fmt: skip
        counts = counts.add(outcome)
        cancelled = cancelled or outcome.state == "cancelled"  # the item saw the cancel marker
    over_threshold = threshold is not None and counts.failed >= threshold
    if window.done or cancelled or over_threshold:
        state = final_state(counts, cancelled=cancelled, partial_failure=options.partial_failure)
        why = f"stopped after {counts.failed} failed items (failure_threshold)" if over_threshold else None
        return (yield from _finish(context, replace(job, counts=counts), state, why))
    context.continue_as_new(replace(job, cursor=window.cursor, counts=counts).to_dict())
    return None


def _finish(
    context: df.DurableOrchestrationContext, job: BatchInput, state: JobState, error: str | None
) -> Gen:
    task = FinishBatch(job.job_id, job.request, state.value, job.counts, error)
    yield context.call_activity_with_retry(FINISH_ACTIVITY, SERVICE_RETRY, task.to_dict())
    if not context.is_replaying:
        log.info("batch %s ended %s (%s)", job.job_id, state.value, job.counts.to_dict())
    return {"state": state.value, "error": error, **job.counts.to_dict()}


@bp.orchestration_trigger(context_name="context", orchestration=ITEM_ORCHESTRATOR)
def batch_item(context: df.DurableOrchestrationContext) -> Gen:
    item = ItemInput.from_dict(context.get_input())
    answer = yield from with_retries(context, TRANSFER_ACTIVITY, item, item.request.options.retry,
                                     item.job_id, part_name(item.index))  # fmt: skip
    if isinstance(answer, tuple):
        return ItemOutcome(index=item.index, state=answer[0], error=answer[1]).to_dict()
    return answer
