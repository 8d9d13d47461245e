"""The admission activity's work: read the unfinished jobs, decide (`shared.admission`), record.

`admit` answers a job's orchestration before the job starts: admitted (the record's `admission`
says so for this run, so the job holds its place while it prepares), cancelled (a cancel was
asked, or this run already ended), or wait. A session reopened by new data runs a later run
than its ended record: the record is queued again for it first. A waiting job's record says
why, in `admission`:

    {"run": 0, "waiting": "waiting for 2 earlier jobs of ...", "since": instant, "checked": instant}
    {"run": 0, "admitted": instant, "since": instant}          (since: only when it had waited)

The record is written when the reason changes and at least every `heartbeat_s`, so a job that
waits its turn keeps showing signs of life to the stall check (`shared.reconcile_plan`); the
status answer shows the reason as `waiting` (`shared.job_api.status_header`). `heal_open_index`
drops the open-job rows whose record ended (a write that crashed between the two), so a stale
row never holds a place for long. `check_room` refuses a new job (or a retry) of a requester
with MAX_OPEN_JOBS_PER_USER unfinished jobs already (`TooManyJobs`, answered 429); concurrent
submissions may pass it together, so the cap can be exceeded by a few, never by a loop.
Reads and writes the job store only.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, Final

from shared import admission
from shared.admission import Admission, AdmitTask, Limits
from shared.config import Settings
from shared.deps import Deps
from shared.errors import PermanentError
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobUpdate, current_admission, open_job_of
from shared.sessions import AUTO_REQUESTER

__all__ = ["TooManyJobs", "admit", "check_room", "heal_open_index", "heartbeat_s", "limits_of"]

log = logging.getLogger(__name__)

MAX_HEARTBEAT_S: Final = 300.0
# When a refused requester may try again: jobs take minutes, so sooner would only be refused again.
ROOM_RETRY_AFTER_S: Final = 60


class TooManyJobs(PermanentError):
    """The requester has as many unfinished jobs as allowed: 429 with Retry-After."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.retry_after = str(ROOM_RETRY_AFTER_S)


def limits_of(settings: Settings) -> Limits:
    return Limits(
        per_user=settings.max_running_jobs_per_user,
        per_kind=dict(settings.max_running_jobs_per_kind),
        uncapped_users=frozenset({AUTO_REQUESTER.lower()}),
        open_per_user=settings.max_open_jobs_per_user,
    )


def check_room(deps: Deps, requested_by: str) -> None:
    """Refuse a new job (or a retry) of `requested_by` when they have MAX_OPEN_JOBS_PER_USER
    unfinished jobs (TooManyJobs); the job store is read only when the cap is on."""
    limits = limits_of(deps.settings)
    if limits.open_per_user <= 0:
        return
    reason = admission.open_cap_reason(requested_by, deps.jobs.open_jobs(), limits)
    if reason is not None:
        log.info("new job refused: %s", reason)
        raise TooManyJobs(reason)


def heartbeat_s(settings: Settings) -> float:
    """How often a waiting job's record is written even when its reason stays the same: well
    inside the stall deadline, whatever JOB_STALL_MINUTES says."""
    return min(MAX_HEARTBEAT_S, settings.job_stall_minutes * 60 / 4)


def admit(task: AdmitTask, deps: Deps, *, now: dt.datetime | None = None) -> Admission:
    now = now or dt.datetime.now(dt.UTC)
    record = deps.jobs.get_record(task.job_id)
    if record is None:
        return Admission(admitted=True)  # nothing to hold back; the job's own steps report it
    if is_terminal(JobState(record["state"])):
        if task.run <= int(record.get("run", 0)):
            return Admission(cancelled=True)  # this run has ended (settled meanwhile)
        record = _reopen(record, task.run, deps)
    if deps.jobs.cancel_requested(task.job_id):
        return Admission(cancelled=True)
    job = open_job_of(record)
    limits = limits_of(deps.settings)
    if job is None or job.started or not limits.applies(job):
        return Admission(admitted=True)
    decision = admission.decide(job, deps.jobs.open_jobs(), limits)
    run = int(record.get("run", 0))
    current = current_admission(record)
    since = _instant(current.get("since")) or now
    if decision.admitted:
        document: dict[str, Any] = {"run": run, "admitted": _stamp(now)}
        if current:
            document["since"] = _stamp(since)
        deps.jobs.update_record(task.job_id, JobUpdate(admission=document))
        if current:
            log.info("job %s: admitted after waiting %.0f s", task.job_id, (now - since).total_seconds())
        return Admission(admitted=True)
    checked = _instant(current.get("checked"))
    stale = checked is None or (now - checked).total_seconds() >= heartbeat_s(deps.settings)
    if current.get("waiting") != decision.reason or stale:
        document = {"run": run, "waiting": decision.reason, "since": _stamp(since), "checked": _stamp(now)}
        deps.jobs.update_record(task.job_id, JobUpdate(admission=document))
        log.info("job %s: %s", task.job_id, decision.reason)
    return Admission(reason=decision.reason, wait_s=admission.wait_s((now - since).total_seconds()))


def _reopen(record: Mapping[str, Any], run: int, deps: Deps) -> dict[str, Any]:
    """A session reopened by new data after its end runs a later run than its record: queue the
    record for that run now (its first scan would), so it waits visibly `queued`, in line."""
    from shared.job_api import requeue  # job_api imports the kinds' modules, which import this

    log.info("job %s: queued again for run %d", record["id"], run)
    return requeue(record, record["request"], deps, run=run)


def heal_open_index(deps: Deps) -> int:
    """Write again the listing rows of open jobs whose record says otherwise; how many."""
    healed = 0
    for job in deps.jobs.open_jobs():
        record = deps.jobs.get_record(job.job_id)
        if record is not None and open_job_of(record) == job:
            continue
        log.warning("job %s: its open-job row was behind its record; indexing it again", job.job_id)
        deps.jobs.reindex(job.job_id)
        healed += 1
    return healed


def _stamp(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _instant(text: object) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
