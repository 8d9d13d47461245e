"""The session orchestrations (seed 000: a session's generated data exported as it appears).

`session_job`, one instance per app and session (instance id = job id), input `SessionInput`:
 0. before its first scan, wait the session's turn under the caps on running jobs
    (`orchestrators.common.wait_turn`): it stays `queued`, saying why (its data waits in the
    container, and the first scan sees all of it); a cancel ends it `cancelled`;
 1. `session_scan` says what is new since the last look (and records the job running, and new
    items `queued` or `skipped`); it is asked again on each wake event (a new blob, the
    session-completed message), when the last item under way ends, and after an item whose blob
    changed while it was exported;
 2. one `session_item` per item, at most `options.concurrency` at once; a cancel event stops
    starting new ones;
 3. when nothing is under way: the session ends if its completion message came (or it had no
    new data for `idle_timeout_minutes`), else it waits for a wake (or `IDLE_RESCAN_MINUTES`)
    and continues as new, as it does after `GENERATION_BUDGET` items: history stays bounded;
 4. `session_finish` settles the items under way and records the outcome.

`session_item`, one instance per item version: `session_transfer` with retries and backoff, a
cancel ending the wait (`orchestrators.common.with_retries`).

Deterministic: no I/O, clock or randomness here; times come from the context.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import azure.durable_functions as df

from orchestrators.common import (
    CANCELLED,
    CONTINUE,
    SERVICE_RETRY,
    Gen,
    record_job,
    wait,
    wait_turn,
    with_retries,
)
from shared._strict import replace
from shared.error_text import readable
from shared.export_tasks import CANCEL_EVENT
from shared.jobs import JobState
from shared.jobstore import JobUpdate
from shared.session_plan import Step, idle_step
from shared.session_tasks import (
    FINISH_ACTIVITY,
    GENERATION_BUDGET,
    ITEM_ORCHESTRATOR,
    SCAN_ACTIVITY,
    SCAN_BUDGET,
    SESSION_ORCHESTRATOR,
    TRANSFER_ACTIVITY,
    WAKE_EVENT,
    FinishSession,
    ItemRef,
    ScanResult,
    ScanTask,
    SessionInput,
    SessionItemInput,
    SessionItemOutcome,
    item_instance_id,
    part_name,
)

bp = df.Blueprint()
log = logging.getLogger(__name__)


def _now(context: df.DurableOrchestrationContext) -> str:
    return str(context.current_utc_datetime.strftime("%Y-%m-%dT%H:%M:%SZ"))


@bp.orchestration_trigger(context_name="context", orchestration=SESSION_ORCHESTRATOR)
def session_job(context: df.DurableOrchestrationContext) -> Gen:
    job = SessionInput.from_dict(context.get_input())
    if job.waits_turn and not job.started:
        turn = yield from wait_turn(context, job.job_id, job.run)
        if turn == CANCELLED:
            return (yield from _finish(context, job, JobState.CANCELLED, None))
        if turn == CONTINUE:
            context.continue_as_new(job.to_dict())
            return None
    scan_task = ScanTask(job_id=job.job_id, app=job.app, session_id=job.session_id, run=job.run)
    scan = ScanResult()
    pending: list[ItemRef] = []
    running: dict[Any, str] = {}  # task -> path
    started = scans = 0
    deferred = False  # a wake came after the scan budget was spent: the next execution scans
    cancelled = False
    completed = False
    need_scan = True
    wake = context.wait_for_external_event(WAKE_EVENT)
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    while True:
        if need_scan and not cancelled:
            held = tuple(p.path for p in pending) + tuple(running.values())
            task = replace(scan_task, held=held, limit=max(0, GENERATION_BUDGET - started - len(pending)),
                           starting=not job.started)  # fmt: skip
            scan = ScanResult.from_dict(
                (yield context.call_activity_with_retry(SCAN_ACTIVITY, SERVICE_RETRY, task.to_dict()))
            )
            need_scan = False
            scans += 1
            if not job.started:
                job = replace(job, started=True)
            if scan.error:
                return (yield from _finish(context, job, JobState.FAILED, scan.error))
            cancelled = cancelled or scan.cancelled
            completed = scan.completed
            pending += list(scan.items)
            if scan.new_data or job.last_activity is None:
                job = replace(job, last_activity=_now(context))
        while pending and not cancelled and len(running) < scan.options.concurrency:
            ref = pending.pop(0)
            work = SessionItemInput(job_id=job.job_id, app=job.app, session_id=job.session_id, item=ref,
                                    run=job.run, retry=scan.options.retry)  # fmt: skip
            instance = item_instance_id(job.job_id, ref.path, ref.etag, job.run)
            running[context.call_sub_orchestrator(ITEM_ORCHESTRATOR, work.to_dict(), instance)] = ref.path
            started += 1
        if cancelled and not running:
            return (yield from _finish(context, job, JobState.CANCELLED, None))
        if running:
            winner = yield context.task_any([*running, wake, *([] if cancelled else [cancel])])
            if winner == wake:
                need_scan = scans < SCAN_BUDGET
                deferred = deferred or not need_scan
                wake = context.wait_for_external_event(WAKE_EVENT)
            elif winner == cancel:
                cancelled = True
            else:
                path = running.pop(winner)
                outcome = _outcome(winner, path)
                need_scan = (outcome.changed or not running) and scans < SCAN_BUDGET
                deferred = deferred or ((outcome.changed or not running) and not need_scan)
                cancelled = cancelled or outcome.state == "cancelled"
            continue
        if pending:
            continue
        step = idle_step(
            completed=completed,
            open_items=scan.open_items,
            more=scan.more or deferred,
            started=started,
            now=context.current_utc_datetime,
            last_activity=job.last_activity,
            idle_timeout=dt.timedelta(minutes=scan.options.idle_timeout_minutes),
        )
        if step.kind == Step.FINISH:
            return (yield from _finish(context, job, JobState.SUCCEEDED, None, note=step.note))
        if step.kind == Step.CONTINUE:
            context.continue_as_new(job.to_dict())
            return None
        winner = yield context.task_any([wake, cancel, wait(context, step.wait_s)])
        if winner == cancel:
            return (yield from _finish(context, job, JobState.CANCELLED, None))
        if winner != wake:  # the periodic look: also tells the stall check the session is alive
            yield record_job(context, job.job_id, JobUpdate())
        context.continue_as_new(job.to_dict())
        return None


def _outcome(task: Any, path: str) -> SessionItemOutcome:
    if isinstance(task.result, Exception):  # the item orchestration failed (a bug, or terminated)
        return SessionItemOutcome(path=path, state="failed", error=readable(task.result))
    return SessionItemOutcome.from_dict(task.result)


def _finish(
    context: df.DurableOrchestrationContext,
    job: SessionInput,
    state: JobState,
    error: str | None,
    note: str | None = None,
) -> Gen:
    task = FinishSession(job_id=job.job_id, state=state.value, error=error, note=note)
    yield context.call_activity_with_retry(FINISH_ACTIVITY, SERVICE_RETRY, task.to_dict())
    if not context.is_replaying:
        log.info("session %s ended %s", job.job_id, state.value)
    return {"state": state.value, "error": error}


@bp.orchestration_trigger(context_name="context", orchestration=ITEM_ORCHESTRATOR)
def session_item(context: df.DurableOrchestrationContext) -> Gen:
    work = SessionItemInput.from_dict(context.get_input())
    answer = yield from with_retries(
        context, TRANSFER_ACTIVITY, work, work.retry, work.job_id, part_name(work.item.path)
    )
    if isinstance(answer, tuple):
        return SessionItemOutcome(path=work.item.path, state=answer[0], error=answer[1]).to_dict()
    return answer
