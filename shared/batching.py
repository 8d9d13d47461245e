"""A batch's units of work, one function per activity: prepare, next window, transfer, finish.

Each takes its contract and the `Deps`, does its I/O and returns a small outcome. Only
`TransientError` escapes `transfer` (the item orchestration waits and tries again, showing the
item `retrying`); permanent failures come back as outcomes. Bytes go from the item source
straight to the destination here (`shared.transfer`), never through the orchestrator. Each
item's progress is its part `item-NNNNN` in the job store, written only by the activity moving it.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.batch_contracts import BatchRequest, item_values
from shared.batch_tasks import WINDOW, BatchInput, Counts, ItemInput, ItemOutcome, NextItems
from shared.delivery import Cancelled, PartProgress, check_destination, deliver, secret
from shared.deps import Deps
from shared.error_text import readable
from shared.errors import PermanentError, TransientError
from shared.export_tasks import StepOutcome
from shared.items.base import ItemSource
from shared.items.factory import make_item_source
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobUpdate, utc_now
from shared.outcome_mail import queue_outcome
from shared.preparing import note_retrying

__all__ = ["finish", "next_items", "part_name", "prepare", "transfer"]

log = logging.getLogger(__name__)

_items_cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_cache_lock = threading.Lock()


def part_name(index: int) -> str:
    return f"item-{index:05d}"


def _items(job_id: str, deps: Deps) -> tuple[str, ...]:
    with _cache_lock:
        if job_id in _items_cache:
            _items_cache.move_to_end(job_id)
            return _items_cache[job_id]
    record = deps.jobs.get_record(job_id)
    if record is None:
        raise PermanentError(f"batch {job_id} has no record")
    items = tuple(record.get("items") or ())
    with _cache_lock:
        _items_cache[job_id] = items
        while len(_items_cache) > 16:
            _items_cache.popitem(last=False)
    return items


def _source(request: BatchRequest, deps: Deps) -> ItemSource:
    spec = request.source
    given = secret(deps, spec.secret_name)
    client_kwargs: dict[str, Any] = {}
    if spec.kind == "blob" and spec.container is not None:  # DestinationRefused: permanent
        policy = deps.settings.destination_policy
        policy.check(given, spec.container, reading=True)
        # Another account's client checks the outbound policy again at every connection.
        client_kwargs["outbound"] = policy.outbound_for(given)
    return make_item_source(
        spec.kind,
        container=spec.container,
        secret_value=given,
        storage_connection=deps.settings.export_storage_connection,
        http_client=deps.http,
        local_root=deps.settings.batch_local_root,
        **client_kwargs,
    )


def prepare(task: BatchInput, deps: Deps) -> StepOutcome:
    """The destination answers (and its container exists); the secrets resolve."""
    if deps.jobs.cancel_requested(task.job_id):
        return StepOutcome(cancelled=True)
    try:
        _source(task.request, deps)
        check_destination(task.request.destination, deps)
    except TransientError as exc:
        note_retrying(deps, task.job_id, exc)
        raise
    except PermanentError as exc:
        log.warning("batch %s: preparation failed permanently: %s", task.job_id, exc)
        return StepOutcome(error=readable(exc))
    return StepOutcome()


def next_items(task: BatchInput, deps: Deps) -> NextItems:
    """The next window of item indices to do from `task.cursor`. A first run does every item; a
    retry run skips the items that succeeded before."""
    total = task.request.item_count
    if deps.jobs.cancel_requested(task.job_id):
        return NextItems(indices=(), cursor=task.cursor, done=True, cancelled=True)
    end = min(total, task.cursor + WINDOW)
    indices = list(range(task.cursor, end))
    if task.run:
        indices = [
            i
            for i in indices
            if (deps.jobs.get_part(task.job_id, part_name(i)) or {}).get("state") != "succeeded"
        ]
    return NextItems(indices=tuple(indices), cursor=end, done=end >= total)


def transfer(task: ItemInput, deps: Deps) -> ItemOutcome:
    """Move item `task.index` to the destination; TransientError when it may work next time."""
    job_id, request, index = task.job_id, task.request, task.index
    part = part_name(index)
    item = _items(job_id, deps)[index]
    if deps.jobs.cancel_requested(job_id):
        return _ended(deps, task, item, "cancelled", None)
    base: dict[str, Any] = {"item": item, "index": index, "state": "transferring", "attempts": task.attempt,
                            "bytes_done": 0, "bytes_total": None, "last_error": None}  # fmt: skip
    try:
        source = _source(request, deps)
        info = source.stat(item)  # a missing item fails here, for good, before anything is written
        base["bytes_total"] = info.size if info.size_known else None
        deps.jobs.put_part(job_id, part, {**base, "updated": utc_now()})
        values = item_values(item, index, request.source.kind)
        result, where = deliver(source, item, request.destination, deps, values={**dict(request.labels), **values},
                                blob_path=values["path"], job_id=job_id, progress=PartProgress(deps, job_id, part, base))  # fmt: skip
    except Cancelled:
        return _ended(deps, task, item, "cancelled", None)
    except TransientError as exc:
        deps.jobs.put_part(
            job_id, part, {**base, "state": "retrying", "last_error": readable(exc), "updated": utc_now()}
        )
        raise
    except PermanentError as exc:
        log.warning("batch %s item %d failed permanently: %s", job_id, index, exc)
        return _ended(deps, task, item, "failed", readable(exc))
    deps.jobs.put_part(job_id, part, {**base, "state": "succeeded", "bytes_done": result.size,
                                      "bytes_total": result.size, "destination": where, "updated": utc_now()})  # fmt: skip
    log.info("batch %s item %d: %d bytes to %s", job_id, index, result.size, where)
    return ItemOutcome(index=index, state="succeeded", bytes=result.size)


def _ended(deps: Deps, task: ItemInput, item: str, state: str, error: str | None) -> ItemOutcome:
    progress = deps.jobs.get_part(task.job_id, part_name(task.index)) or {"item": item, "index": task.index}
    deps.jobs.put_part(task.job_id, part_name(task.index),
                       {**progress, "state": state, "last_error": error, "attempts": task.attempt, "updated": utc_now()})  # fmt: skip
    return ItemOutcome(index=task.index, state=state, error=error)


@dataclass(frozen=True)
class FinishBatch:
    job_id: str
    request: BatchRequest
    state: str
    counts: Counts
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "request": self.request.to_dict(), "state": self.state,
                "counts": self.counts.to_dict(), "error": self.error}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FinishBatch:
        return cls(str(d["job_id"]), BatchRequest.from_dict(d["request"]), str(d["state"]),
                   Counts.from_dict(d.get("counts") or {}), d.get("error"))  # fmt: skip


def finish(task: FinishBatch, deps: Deps) -> None:
    """The batch's end (also the reconciler's): delete its secrets, settle the items under way,
    record the outcome. Idempotent; a batch already ended keeps its first outcome."""
    for name in task.request.secret_names():
        deps.secrets.delete(name)
    view = deps.jobs.view(task.job_id)
    if view is None or is_terminal(JobState(view.record["state"])):
        queue_outcome(task.job_id, deps)  # again: a crash may have come between the two writes
        return
    state = JobState(task.state)
    failed = [p for p in view.parts.values() if p.get("state") == "failed"]
    error = task.error
    if error is None and failed:
        first = min(failed, key=lambda p: int(p.get("index", 0)))
        error = f"{len(failed)} of {task.request.item_count} item(s) failed; item {first.get('item')}: {first.get('last_error')}"
    for name, progress in view.parts.items():
        settled = _settled(progress, state, error)
        if settled != progress:
            deps.jobs.put_part(task.job_id, name, {**settled, "updated": utc_now()})
    outcome = {
        "state": state.value,
        "error": error,
        **task.counts.to_dict(),
        "items": task.request.item_count,
    }
    deps.jobs.update_record(
        task.job_id, JobUpdate(state, last_error=error, finished=utc_now(), outcome=outcome)
    )
    log.info("batch %s finished: %s", task.job_id, state.value)
    queue_outcome(task.job_id, deps)


def _settled(progress: Mapping[str, Any], job_state: JobState, error: str | None) -> dict[str, Any]:
    """An item under way when its batch ended: `cancelled` with the batch, else `failed`. Items
    already moved stay where they are (a batch is many files, not one export to undo)."""
    if progress.get("state") in ("succeeded", "failed", "cancelled", "skipped"):
        return dict(progress)
    if job_state is JobState.CANCELLED:
        return {**progress, "state": "cancelled"}
    return {
        **progress,
        "state": "failed",
        "last_error": progress.get("last_error") or error or "did not finish",
    }
