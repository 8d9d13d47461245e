"""Orchestration-level contracts of a batch, its function names, and its pure decisions.

`batch_job` (one instance per batch, id = job id) asks `batch_next` for the next window of item
indices still to do, runs one `batch_item` sub-orchestration per item (at most `concurrency` at
once), and continues as new after each window, so history stays bounded for 10,000 items. Each
`batch_item` calls `batch_transfer` until it succeeds, fails for good, or runs out of attempts.
Metadata only: item names are read by the activities from the job record, bytes never pass here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

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


@dataclass(frozen=True)
class Counts:
    """What the items of a batch came to so far (carried across continue-as-new)."""

    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0
    bytes: int = 0

    def add(self, outcome: ItemOutcome) -> Counts:
        return replace(
            self,
            succeeded=self.succeeded + (outcome.state == "succeeded"),
            failed=self.failed + (outcome.state == "failed"),
            cancelled=self.cancelled + (outcome.state == "cancelled"),
            bytes=self.bytes + outcome.bytes,
        )

    def to_dict(self) -> dict[str, int]:
        return {
            "succeeded": self.succeeded,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "bytes": self.bytes,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Counts:
        return cls(**{k: int(d.get(k, 0)) for k in ("succeeded", "failed", "cancelled", "bytes")})


@dataclass(frozen=True)
class BatchInput:
    job_id: str
    request: BatchRequest
    run: int = 0
    cursor: int = 0  # the first index not yet looked at
    counts: Counts = field(default_factory=Counts)
    prepared: bool = False
    consecutive_failures: int = 0  # of the preparation

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "request": self.request.to_dict(), "run": self.run, "cursor": self.cursor,
                "counts": self.counts.to_dict(), "prepared": self.prepared,
                "consecutive_failures": self.consecutive_failures}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BatchInput:
        return cls(str(d["job_id"]), BatchRequest.from_dict(d["request"]), int(d.get("run", 0)),
                   int(d.get("cursor", 0)), Counts.from_dict(d.get("counts") or {}), bool(d.get("prepared")),
                   int(d.get("consecutive_failures", 0)))  # fmt: skip


@dataclass(frozen=True)
class NextItems:
    """The next window: item indices still to do (not succeeded), and where to look after it."""

    indices: tuple[int, ...]
    cursor: int
    done: bool

    def to_dict(self) -> dict[str, Any]:
        return {"indices": list(self.indices), "cursor": self.cursor, "done": self.done}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NextItems:
        return cls(tuple(int(i) for i in d["indices"]), int(d["cursor"]), bool(d["done"]))


@dataclass(frozen=True)
class ItemInput:
    job_id: str
    request: BatchRequest
    index: int
    attempt: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "request": self.request.to_dict(), "index": self.index,
                "attempt": self.attempt}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemInput:
        return cls(
            str(d["job_id"]), BatchRequest.from_dict(d["request"]), int(d["index"]), int(d.get("attempt", 1))
        )


@dataclass(frozen=True)
class ItemOutcome:
    index: int
    state: str  # succeeded | failed | cancelled
    bytes: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "state": self.state, "bytes": self.bytes, "error": self.error}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ItemOutcome:
        return cls(int(d["index"]), str(d["state"]), int(d.get("bytes", 0)), d.get("error"))


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
