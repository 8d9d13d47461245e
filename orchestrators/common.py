"""What every job kind's orchestrations share: cancellable waits and the job-record writes.

Deterministic like the orchestrators that use it: times come from the context; the writes are
activity calls (`export_record`), retried patiently because they go to the service's own storage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from shared import export_plan
from shared._strict import replace
from shared.error_text import readable
from shared.export_tasks import CANCEL_EVENT, RECORD_ACTIVITY, RecordUpdate
from shared.jobstore import JobUpdate, PartUpdate

Gen = Generator[Any, Any, Any]

# Job-record writes and the final clean-up go to the service's own storage and secret store,
# not to the user's endpoints: retry them patiently (10 attempts 2 s apart) whatever the job says.
SERVICE_RETRY = df.RetryOptions(2000, 10)


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
