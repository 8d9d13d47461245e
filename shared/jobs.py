"""The life cycle of an export job: its states and the only transitions allowed between them.

    queued    -> running | failed | cancelled
    running   -> retrying | succeeded | failed | cancelled
    retrying  -> running | failed | cancelled
    succeeded, failed, cancelled: terminal

`retrying` is the seed's "Retriable": a failure below `failure_threshold`; the job goes back to
`running` when it resumes. Terminal states have no way out, so a late or replayed update cannot
resurrect a finished job. Pure data: the job store and the orchestrator decide *when* to move.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Final

from shared.errors import PermanentError

__all__ = [
    "TERMINAL_STATES",
    "TRANSITIONS",
    "InvalidTransitionError",
    "JobState",
    "can_transition",
    "is_terminal",
    "require_transition",
]


class JobState(StrEnum):
    """String values, so records and API responses carry the plain names."""

    QUEUED = "queued"
    RUNNING = "running"
    RETRYING = "retrying"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TRANSITIONS: Final[dict[JobState, frozenset[JobState]]] = {
    # Failing straight from queued covers a job whose secrets or destination check fail for good
    # before any page ran.
    # Queued -> retrying: preparation (secrets, connection checks) failed transiently (seed 002
    # step 1: "below threshold, mark the job Retriable").
    JobState.QUEUED: frozenset({JobState.RUNNING, JobState.RETRYING, JobState.FAILED, JobState.CANCELLED}),
    JobState.RUNNING: frozenset({JobState.RETRYING, JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED}),
    # A retrying job must run again before it can succeed: success is only observed while running.
    JobState.RETRYING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.CANCELLED}),
    JobState.SUCCEEDED: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.CANCELLED: frozenset(),
}

TERMINAL_STATES: Final[frozenset[JobState]] = frozenset(
    state for state, targets in TRANSITIONS.items() if not targets
)


class InvalidTransitionError(PermanentError):
    """A caller tried a move the table forbids (e.g. succeeded -> running)."""

    def __init__(self, current: JobState, target: JobState) -> None:
        super().__init__(f"job cannot go from {current.value} to {target.value}")
        self.current = current
        self.target = target


def can_transition(current: JobState, target: JobState) -> bool:
    """True when `current -> target` is in the table. Staying in a state is not a transition:
    callers that update progress without changing state check `current == target` themselves."""
    return target in TRANSITIONS[JobState(current)]


def require_transition(current: JobState, target: JobState) -> JobState:
    """Return `target` when the move is allowed, else raise InvalidTransitionError."""
    if not can_transition(current, target):
        raise InvalidTransitionError(JobState(current), JobState(target))
    return JobState(target)


def is_terminal(state: JobState) -> bool:
    return JobState(state) in TERMINAL_STATES
