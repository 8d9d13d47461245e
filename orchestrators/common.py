"""What every job kind's orchestrations share: cancellable waits and retries (`call_retrying`),
the job-record writes, and waiting a job's turn under the caps on running jobs (`wait_turn`).

Deterministic like the orchestrators that use it: times come from the context; the writes are
activity calls (`export_record`), retried patiently because they go to the service's own storage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df

from shared import export_plan
from shared._strict import replace
from shared.admission import ADMIT_ACTIVITY, Admission, AdmitTask
from shared.error_text import readable
from shared.export_tasks import CANCEL_EVENT, RECORD_ACTIVITY, RecordUpdate
from shared.jobstore import JobUpdate, PartUpdate
from shared.retry import RetryPolicy

Gen = Generator[Any, Any, Any]

# Job-record writes and the final clean-up go to the service's own storage and secret store,
# not to the user's endpoints: retry them patiently (10 attempts 2 s apart) whatever the job says.
SERVICE_RETRY = df.RetryOptions(2000, 10)

# What `wait_turn` answers. A job waits at most this many times per execution, then continues
# as new: with the waits growing to half a minute, an execution holds some ten minutes of asks.
ADMITTED, CANCELLED, CONTINUE = "admitted", "cancelled", "continue"
WAITS_PER_EXECUTION = 20


def wait(context: df.DurableOrchestrationContext, seconds: float) -> Any:
    return context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=seconds))


def wait_unless_cancelled(context: df.DurableOrchestrationContext, seconds: float) -> Gen:
    """Wait `seconds`, or less if a cancel event comes; True when it was cancelled.

    The timer is never cancelled: when it won it has fired (SDK 1.x raises "Cannot cancel a
    completed task" for a fired timer), and when the event won the instance ends or continues
    as new, which drops the timer. A cancel raised while nothing waits is dropped by
    continue-as-new, but the cancel marker stops the next page, item or preparation."""
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    timer = wait(context, seconds)
    return (yield context.task_any([timer, cancel])) == cancel


def call_retrying(
    context: df.DurableOrchestrationContext,
    activity: str,
    payload: Any,
    policy: RetryPolicy,
    note_failure: Callable[[Exception], Any] | None = None,
) -> Gen:
    """Call `activity` under a job's retry policy, as `call_activity_with_retry` would (up to
    `policy.max_attempts` attempts, `first_retry_interval_ms` apart), but wait each interval
    through `wait_unless_cancelled`: the runtime's own retry waits out its timer whatever comes,
    so a cancel during an hour-long interval would wait the hour. A cancel raised during an
    attempt is kept by the SDK until the next wait listens for it.

    `note_failure(error)`, when given, makes the task (a record write) that tells a person why
    the step waits to be tried again; it runs before each wait. The activity's answer;
    `CANCELLED` when a cancel came during a wait; the last failure raised once every attempt
    failed."""
    attempt = 1
    while True:
        try:
            return (yield context.call_activity(activity, payload))
        except Exception as exc:
            if attempt >= policy.max_attempts:
                raise
            if note_failure is not None:
                yield note_failure(exc)
        if (yield from wait_unless_cancelled(context, policy.first_retry_interval_ms / 1000)):
            return CANCELLED
        attempt += 1


def record_job(context: df.DurableOrchestrationContext, job_id: str, update: JobUpdate) -> Any:
    return context.call_activity_with_retry(
        RECORD_ACTIVITY, SERVICE_RETRY, RecordUpdate(job_id=job_id, job=update).to_dict()
    )


def record_part(context: df.DurableOrchestrationContext, job_id: str, part: str, update: PartUpdate) -> Any:
    work = RecordUpdate(job_id=job_id, part=part, part_update=update)
    return context.call_activity_with_retry(RECORD_ACTIVITY, SERVICE_RETRY, work.to_dict())


def with_retries(
    context: df.DurableOrchestrationContext, activity: str, work: Any, policy: Any, job_id: str, part: str
) -> Gen:
    """Call `activity` with `work` (a contract with an `attempt` field) until it answers, waiting
    `policy`'s backoff between transient failures (the activity recorded the part `retrying`).

    Returns the activity's answer, or `("failed", reason)` once `policy.max_attempts` failed
    (the part is recorded failed), or `("cancelled", None)` when a cancel came during a wait."""
    while True:
        try:
            return (yield context.call_activity(activity, work.to_dict()))
        except Exception as exc:  # noqa: BLE001 - transient: the activity recorded the part retrying
            if work.attempt >= policy.max_attempts:
                last = f"{work.attempt} attempts failed; last: {readable(exc)}"
                yield record_part(context, job_id, part, PartUpdate("failed", last_error=last))
                return ("failed", last)
            wait_s = export_plan.failure_wait_s(work.attempt, policy.first_retry_interval_ms)
            if (yield from wait_unless_cancelled(context, wait_s)):
                yield record_part(context, job_id, part, PartUpdate("cancelled"))
                return ("cancelled", None)
            work = replace(work, attempt=work.attempt + 1)


def wait_turn(context: df.DurableOrchestrationContext, job_id: str, run: int = 0) -> Gen:
    """Before a job starts, wait until the caps on running jobs let it (`shared.admission`).

    1. ask `job_admit`: admitted, cancelled (a cancel was asked, or this run already ended), or
       wait `wait_s` (the activity records why on the job, and says how long: replay sees the
       same answer, so no clock is read here);
    2. wait that long;
    3. after WAITS_PER_EXECUTION waits answer CONTINUE: the caller continues as new with its
       unchanged input, so a long wait keeps the history bounded.

    One cancel listener races every ask and every wait, so a cancel event ends the wait at once
    whenever it comes (the SDK only delivers an event to a listener it is waiting on)."""
    cancel = context.wait_for_external_event(CANCEL_EVENT)
    for _ in range(WAITS_PER_EXECUTION):
        ask = context.call_activity_with_retry(
            ADMIT_ACTIVITY, SERVICE_RETRY, AdmitTask(job_id=job_id, run=run).to_dict()
        )
        if (yield context.task_any([ask, cancel])) == cancel:
            return CANCELLED
        if isinstance(ask.result, Exception):  # the retries ran out: fail like a plain call would
            raise ask.result
        answer = Admission.from_dict(ask.result)
        if answer.cancelled:
            return CANCELLED
        if answer.admitted:
            return ADMITTED
        if (yield context.task_any([wait(context, answer.wait_s), cancel])) == cancel:
            return CANCELLED
    return CONTINUE
