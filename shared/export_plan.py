"""Pure decisions of the export orchestrators (deterministic, no I/O, unit-tested).

`after_page` is the seed's bookkeeping after a page is staged: which file it belongs to, whether
to commit now (every `commit_every_pages`, at rollover, at the end) and whether the type is done.
`committed` is the checkpoint once that commit succeeded: failures reset, the next file started
if this one is full. `job_state` folds the types' outcomes into the job's final state.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from shared._strict import replace
from shared.contracts import ExportOptions, FileState, PageResult, TypeCheckpoint
from shared.retry import compute_backoff

MAX_WAIT_S = 300.0  # cap on any single durable wait (Retry-After or failure backoff)


@dataclass(frozen=True)
class PageDecision:
    commit: bool
    done: bool
    rollover: bool
    # Nothing staged to commit, but `commit_every_pages` pages were read (empty searches, such
    # as patient chunks without data): continue-as-new anyway, so history stays bounded.
    checkpoint: bool = False


def start(checkpoint: TypeCheckpoint) -> TypeCheckpoint:
    """Every checkpoint has a current file: the first one is `Type-1.ndjson`."""
    if checkpoint.files:
        return checkpoint
    return replace(checkpoint, files=(FileState.start(checkpoint.type, 1),))


def after_page(
    checkpoint: TypeCheckpoint, result: PageResult, options: ExportOptions, pages_since_commit: int
) -> tuple[TypeCheckpoint, PageDecision]:
    cp = start(checkpoint)
    current = cp.files[-1]
    if result.resources:
        current = current.with_block(result.block_id, result.size_bytes, result.resources)
    query = cp.query
    if result.next_cursor is None and result.next_query is not None:
        query = result.next_query  # this search is done; the next one starts at its first page
    cp = replace(
        cp,
        cursor=result.next_cursor,
        query=query,
        pages_done=cp.pages_done + 1,
        files=(*cp.files[:-1], current),
    )
    done = result.last_page
    full = current.is_full(options.max_file_bytes)
    due = pages_since_commit + 1 >= options.commit_every_pages
    commit = current.pending and (done or full or due)
    restart = due and not current.pending and not done
    return cp, PageDecision(commit=commit, done=done, rollover=full and not done, checkpoint=restart)


def committed(checkpoint: TypeCheckpoint, decision: PageDecision) -> TypeCheckpoint:
    """The checkpoint after the current file's commit succeeded."""
    files = (*checkpoint.files[:-1], checkpoint.files[-1].mark_committed())
    if decision.rollover:
        files = (*files, FileState.start(checkpoint.type, files[-1].sequence + 1))
    return replace(checkpoint, files=files, consecutive_failures=0, done=decision.done)


def failure_wait_s(failures: int, first_retry_interval_ms: int) -> float:
    """Backoff before the next attempt after `failures` consecutive failed attempts."""
    return compute_backoff(failures, first_retry_interval_ms / 1000.0, MAX_WAIT_S)


def preparation_error(failures: int, error: str) -> str:
    """Why a job failed before any page: its connection checks kept failing."""
    attempts = "once" if failures == 1 else f"{failures} times in a row"
    return f"the source or destination could not be reached ({attempts}): {error}"


def retry_after_wait_s(requested_s: float) -> float:
    return max(0.0, min(requested_s, MAX_WAIT_S))


def all_file_names(checkpoint: TypeCheckpoint) -> list[str]:
    """Every file the type touched, committed or only staged (what a cancel must delete)."""
    return [f.name for f in checkpoint.files if f.blocks]


def type_outcome(checkpoint: TypeCheckpoint, state: str, error: str | None = None) -> dict[str, Any]:
    return {
        "type": checkpoint.type,
        "state": state,
        "error": error,
        "resources": sum(f.committed_resources for f in checkpoint.files),
        "files": all_file_names(checkpoint),
    }


def job_state(outcomes: Iterable[Mapping[str, Any]], cancel_requested: bool) -> str:
    states = {o["state"] for o in outcomes}
    if "failed" in states:
        return "failed"
    if cancel_requested or "cancelled" in states:
        return "cancelled"
    return "succeeded"


def job_error(outcomes: Iterable[Mapping[str, Any]]) -> str | None:
    errors = [f"{o['type']}: {o['error']}" for o in outcomes if o["state"] == "failed" and o.get("error")]
    return "; ".join(errors) or None
