"""Orchestration-level contracts of a batch, its function names, and its pure decisions.

`batch_job` (one instance per batch, id = job id) asks `batch_next` for the next window of item
indices still to do, runs one `batch_item` sub-orchestration per item (at most `concurrency` at
once), and continues as new after each window, so history stays bounded for 10,000 items. Each
`batch_item` calls `batch_transfer` until it succeeds, fails for good, or runs out of attempts.
Metadata only: item names are read by the activities from the job record, bytes never pass here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from shared._strict import Contract, Count, Items, replace
from shared.batch_contracts import BatchRequest
from shared.jobs import JobState

__all__ = [
    "BATCH_ORCHESTRATOR",
    "FINISH_ACTIVITY",
    "ITEM_ORCHESTRATOR",
    "NEXT_ACTIVITY",
    "PREPARE_ACTIVITY",
    "TRANSFER_ACTIVITY",
    "WINDOW",
    "BatchInput",
    "Counts",
    "ItemInput",
    "ItemOutcome",
    "NextItems",
    "final_state",
    "item_instance_id",
]

BATCH_ORCHESTRATOR: Final = "batch_job"
ITEM_ORCHESTRATOR: Final = "batch_item"
PREPARE_ACTIVITY: Final = "batch_prepare"
NEXT_ACTIVITY: Final = "batch_next"
TRANSFER_ACTIVITY: Final = "batch_transfer"
FINISH_ACTIVITY: Final = "batch_finish"
# Items per orchestration execution before it continues as new: about 10 history events each.
WINDOW: Final = 100


def item_instance_id(job_id: str, index: int, run: int = 0) -> str:
    return f"{job_id}:item:{index}" if run == 0 else f"{job_id}:item:{index}:r{run}"


class Counts(Contract):
    """What the items of a batch came to so far (carried across continue-as-new)."""

    succeeded: Count = 0
    failed: Count = 0
    cancelled: Count = 0
    bytes: Count = 0

    def add(self, outcome: ItemOutcome) -> Counts:
        return replace(
            self,
            succeeded=self.succeeded + (outcome.state == "succeeded"),
            failed=self.failed + (outcome.state == "failed"),
            cancelled=self.cancelled + (outcome.state == "cancelled"),
            bytes=self.bytes + outcome.bytes,
        )


class BatchInput(Contract):
    job_id: str
    request: BatchRequest
    run: Count = 0
    cursor: Count = 0  # the first index not yet looked at
    counts: Counts = Counts()
    prepared: bool = False
    consecutive_failures: Count = 0  # of the preparation
    # Set by every path that starts a run since the caps on running jobs and the cancellable
    # retries (`orchestrators.common.call_retrying`) came: a run started before them (its input
    # has no such field) replays as it was started, without the wait, with the runtime's retries.
    waits_turn: bool = False


class NextItems(Contract):
    """The next window: item indices still to do (not succeeded), and where to look after it;
    `cancelled` when the batch's cancel marker is set (a cancel event raised while no execution
    waited is dropped by continue-as-new, the marker is not)."""

    indices: Items[int]
    cursor: Count
    done: bool
    cancelled: bool = False


class ItemInput(Contract):
    job_id: str
    request: BatchRequest
    index: Count
    attempt: Count = 1


class ItemOutcome(Contract):
    index: int  # -1: an item orchestration that failed before it could say which item
    state: str  # succeeded | failed | cancelled
    bytes: Count = 0
    error: str | None = None


def final_state(counts: Counts, *, cancelled: bool, partial_failure: str) -> JobState:
    """The batch's end: cancelled if asked; failed if an item failed (unless partial failure
    counts as success and something succeeded); else succeeded."""
    if cancelled:
        return JobState.CANCELLED
    if counts.failed and (partial_failure == "fail" or not counts.succeeded):
        return JobState.FAILED
    return JobState.SUCCEEDED


def failure_summary(outcomes: Iterable[ItemOutcome], counts: Counts) -> str | None:
    if not counts.failed:
        return None
    first = next((o for o in outcomes if o.state == "failed" and o.error), None)
    detail = f"; e.g. item {first.index}: {first.error}" if first else ""
    return f"{counts.failed} item(s) failed{detail}"
