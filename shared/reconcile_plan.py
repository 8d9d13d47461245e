"""Pure decisions of a job's end: settling its parts, and reconciling a record with its orchestration.

A job record is written by its orchestration; an orchestration can also end without writing it
(it failed on a bug, an operator terminated or purged it, or it hangs on a child that will never
answer). `decide` compares a non-terminal record with what the durable runtime says and returns
the `Verdict` to apply (the caller runs the same clean-up as a normal end), or None when the job
is fine. `settle_part` puts one part's progress in a terminal state when its job ends, so no part
of an ended job still says `running`. No I/O, no clock: `now` is passed in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.error_text import readable
from shared.jobs import JobState, is_terminal

__all__ = ["ORPHAN_GRACE", "RuntimeStatus", "Verdict", "decide", "last_activity", "settle_part"]

# Between writing a job's `queued` record and starting its orchestration there is a moment when
# the runtime knows nothing of it; only a job quiet for this long with no orchestration is orphaned.
ORPHAN_GRACE: Final = dt.timedelta(minutes=2)
_PART_TERMINAL: Final = frozenset({"succeeded", "failed", "cancelled", "skipped"})
_STARTED: Final = frozenset({"running", "retrying"})


@dataclass(frozen=True)
class RuntimeStatus:
    """What the durable runtime says of a job's orchestration; `status` None: no such instance."""

    status: str | None  # Pending, Running, Completed, ContinuedAsNew, Failed, Terminated, Suspended
    output: Any = None  # the failure or termination reason, or the orchestration's result
    last_updated: dt.datetime | None = None


@dataclass(frozen=True)
class Verdict:
    state: JobState  # failed or cancelled
    reason: str | None
    terminate: bool = False  # the orchestration is still there (hung) and must be terminated first


def settle_part(progress: Mapping[str, Any], job_state: JobState, job_error: str | None) -> dict[str, Any]:
    """One part's progress once its job ended `job_state`.

    A cancelled job's files are deleted, so its parts list none and count nothing; a part that
    had not ended is `cancelled`, or `failed` with the job's reason if it was under way when the
    job failed. A part that never started says so."""
    settled = dict(progress)
    state = str(settled.get("state") or "queued")
    if job_state is JobState.CANCELLED:
        settled.update(files=[], resources=0, bytes=0)
        if state != "failed":
            settled["state"] = "cancelled"
        return settled
    if state in _PART_TERMINAL:
        return settled
    if job_state is JobState.FAILED and state in _STARTED:
        settled.update(state="failed", last_error=settled.get("last_error") or job_error)
    elif job_state is JobState.FAILED:
        settled.update(state="cancelled", last_error="not started: the job failed first")
    else:
        settled["state"] = job_state.value
    return settled


def last_activity(record: Mapping[str, Any], parts: Iterable[Mapping[str, Any]]) -> dt.datetime | None:
    """The newest `updated`/`created` stamp of the record and its parts (UTC), and the last
    check of a job waiting its turn under the caps on running jobs (`shared.admitting` checks
    again every few seconds and writes the stamp well inside the stall deadline): a job that
    waits in line is alive, not stalled, for as long as its checks go on."""
    admission = record.get("admission")
    checked = admission.get("checked") if isinstance(admission, Mapping) else None
    stamps = [record.get("updated"), record.get("created"), checked, *(p.get("updated") for p in parts)]
    parsed = [_instant(s) for s in stamps if isinstance(s, str)]
    known = [p for p in parsed if p is not None]
    return max(known) if known else None


def decide(
    record: Mapping[str, Any],
    parts: Iterable[Mapping[str, Any]],
    cancel_requested: bool,
    runtime: RuntimeStatus,
    *,
    now: dt.datetime,
    stall_after: dt.timedelta,
) -> Verdict | None:
    """The end a non-terminal job must be given, or None while its orchestration is alive."""
    if is_terminal(JobState(record["state"])):
        return None
    ended_as = JobState.CANCELLED if cancel_requested else JobState.FAILED
    seen = last_activity(record, parts)
    status = runtime.status
    if status is None:
        # No instance: purged, or never started. A job nobody touched for ORPHAN_GRACE is
        # orphaned; a younger one may be starting, or the runtime may be restarting and answer
        # 404 for a moment, so it is left alone, unless its user asked to cancel it anyway.
        if cancel_requested:
            return Verdict(JobState.CANCELLED, None)
        if seen is None or now - seen < ORPHAN_GRACE:
            return None
        return Verdict(JobState.FAILED, "the job's orchestration no longer exists")
    if status == "Failed" and not cancel_requested:
        return Verdict(JobState.FAILED, f"the job stopped on an internal error: {readable(runtime.output)}")
    if status in ("Failed", "Terminated", "Canceled"):
        if cancel_requested:
            return Verdict(JobState.CANCELLED, None)
        why = f": {readable(runtime.output)}" if runtime.output else ""
        return Verdict(JobState.FAILED, f"the job was terminated by an operator{why}")
    if status == "Completed":
        result = runtime.output if isinstance(runtime.output, Mapping) else {}
        final = result.get("state")
        if final in (JobState.SUCCEEDED.value, JobState.FAILED.value, JobState.CANCELLED.value):
            return Verdict(JobState(final), result.get("error"))
        return Verdict(ended_as, None if cancel_requested else "the job ended without an outcome")
    if status == "Suspended":
        return None  # an operator holds it on purpose
    if seen is not None and now - seen > stall_after:
        minutes = int(stall_after.total_seconds() // 60)
        return Verdict(ended_as, f"no progress for more than {minutes} minutes", terminate=True)
    return None


def _instant(text: object) -> dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)
