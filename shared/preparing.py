"""What a person sees while a job's preparation is being retried.

A job's preparation (its secrets resolve, its destination and source answer) runs under the
request's retry policy, whose waits the durable runtime keeps. Without a word from the
activity the job would stay `queued`, saying nothing, until every attempt had failed (minutes,
with a long `first_retry_interval_ms`). `note_retrying` records the job `retrying` with the
reason after each failed attempt; the orchestration records `running` once one succeeds.
"""

from __future__ import annotations

import logging

from shared.deps import Deps
from shared.error_text import readable
from shared.errors import ExportError, TransientError
from shared.jobs import JobState
from shared.jobstore import JobUpdate

__all__ = ["note_retrying"]

log = logging.getLogger(__name__)


def note_retrying(deps: Deps, job_id: str, failure: TransientError) -> None:
    """Record the job `retrying`, with why, before the failure goes back to the retry policy.
    Best effort: a job that ended meanwhile (a cancel) or a store that does not answer keeps
    its record, and the failure is what the caller raises either way."""
    log.info("job %s: preparation failed, to be tried again: %s", job_id, failure)
    try:
        deps.jobs.update_record(job_id, JobUpdate(JobState.RETRYING, last_error=readable(failure)))
    except (ExportError, KeyError) as exc:  # an ended job (InvalidTransitionError), an outage, no record
        log.info("job %s: not recorded retrying: %s", job_id, exc)
