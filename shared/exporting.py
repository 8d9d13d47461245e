"""The export's units of work, one function per activity (seed 002's processing steps).

Each takes its task contract and the `Deps`, does its I/O, and returns a small outcome. Only
`TransientError` escapes (so the durable retry policy runs it again); permanent failures come
back as outcomes the orchestrator records. Page bytes go from the source straight into a staged
block here and never reach the orchestrator.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from shared.contracts import CommitResult, ExportRequest, PageResult, PageTask, TypeCheckpoint, file_name
from shared.deps import Deps
from shared.destinations.base import Destination, block_id
from shared.destinations.factory import make_destination
from shared.errors import PermanentError, RetryAfterError
from shared.export_tasks import CommitAndRecord, FinishTask, JobInput, PageOutcome, RecordUpdate, StepOutcome
from shared.jobstore import utc_now
from shared.sources.base import Source
from shared.sources.factory import make_source

log = logging.getLogger(__name__)

_SECRET_TTL_S = 300.0  # pages of one job reuse a looked-up secret instead of one vault call each
_secret_cache: dict[str, tuple[float, str]] = {}
_cache_lock = threading.Lock()  # guards the in-process caches: secrets and cancel flags


def _secret(deps: Deps, name: str | None) -> str | None:
    if not name:
        return None
    now = time.monotonic()
    with _cache_lock:
        hit = _secret_cache.get(name)
        if hit and now - hit[0] < _SECRET_TTL_S:
            return hit[1]
    value = deps.secrets.get(name)
    with _cache_lock:
        _secret_cache[name] = (now, value)
    return value


def _forget_secret(name: str | None) -> None:
    if name:
        with _cache_lock:
            _secret_cache.pop(name, None)


_CANCEL_TTL_S = 2.0  # a cancel is seen within this long; saves a storage round trip per page
_cancel_seen: dict[str, tuple[float, bool]] = {}


def _cancelled(deps: Deps, job_id: str) -> bool:
    now = time.monotonic()
    with _cache_lock:
        hit = _cancel_seen.get(job_id)
        if hit and (hit[1] or now - hit[0] < _CANCEL_TTL_S):  # a cancel never expires
            return hit[1]
    value = deps.jobs.cancel_requested(job_id)
    with _cache_lock:
        _cancel_seen[job_id] = (now, value)
    return value


def _source(request: ExportRequest, deps: Deps) -> Source:
    return make_source(request.source, deps.http, _secret(deps, request.source.auth_secret_name))


def _destination(request: ExportRequest, deps: Deps) -> Destination:
    dest = request.destination
    return make_destination(dest, _secret(deps, dest.secret_name), deps.settings)


def prepare(job: JobInput, deps: Deps) -> StepOutcome:
    """Steps 1-3: secrets resolve, the destination and the source answer."""
    if deps.jobs.cancel_requested(job.job_id):
        return StepOutcome(cancelled=True)
    try:
        _destination(job.request, deps).check_connection()
        _source(job.request, deps).check_connection()
    except PermanentError as exc:
        log.warning("job %s: preparation failed permanently: %s", job.job_id, exc)
        return StepOutcome(error=str(exc))
    return StepOutcome()


def export_page(task: PageTask, deps: Deps) -> PageOutcome:
    """Steps 4-6: read one page at the cursor and stage it as a block of the current file."""
    if _cancelled(deps, task.job_id):
        return PageOutcome(cancelled=True)
    name = file_name(task.type, task.file_sequence)
    block = block_id(task.type, task.file_sequence, task.page)
    try:
        page = _source(task.request, deps).fetch_page(task.type, task.cursor)
        if page.count:
            _destination(task.request, deps).stage(name, block, page.ndjson)
    except RetryAfterError as exc:
        log.info(
            "job %s %s page %d: server asked to wait %.1fs",
            task.job_id,
            task.type,
            task.page,
            exc.retry_after_s,
        )
        return PageOutcome(retry_after_s=exc.retry_after_s)
    except PermanentError as exc:
        log.warning("job %s %s page %d failed permanently: %s", task.job_id, task.type, task.page, exc)
        return PageOutcome(
            PageResult(type=task.type, page=task.page, file_name=name, block_id=block, error=str(exc))
        )
    log.info("job %s %s page %d: %d resources staged", task.job_id, task.type, task.page, page.count)
    return PageOutcome(
        PageResult(
            type=task.type,
            page=task.page,
            file_name=name,
            block_id=block,  # nothing staged when resources == 0; the orchestrator skips it
            size_bytes=page.size_bytes,
            resources=page.count,
            next_cursor=page.next_cursor,
        )
    )


def type_progress(
    checkpoint: TypeCheckpoint, destination: Destination, state: str, **extra: Any
) -> dict[str, Any]:
    """The per-type part of the job record: counts of what is committed, and the files."""
    committed = [f for f in checkpoint.files if f.committed_resources]
    files = [
        {
            "type": f.type,
            "name": f.name,
            "sequence": f.sequence,
            "url": destination.url(f.name),
            "count": f.committed_resources,
            "committed_bytes": f.committed_bytes,
        }
        for f in committed
    ]
    progress: dict[str, Any] = {
        "state": state,
        "resources": sum(f.committed_resources for f in committed),
        "bytes": sum(f.committed_bytes for f in committed),
        "files": files,
        "pages": checkpoint.pages_done,
        "consecutive_failures": checkpoint.consecutive_failures,
        "updated": utc_now(),
    }
    progress.update(extra)
    return progress


def commit(task: CommitAndRecord, deps: Deps) -> CommitResult:
    """Step 7: commit the file's block list, then record the type's progress (only at commits)."""
    c = task.commit
    f = c.file
    destination = _destination(c.request, deps)
    metadata = {"job_id": c.job_id, "resource_type": f.type, "resources": str(f.resources)}
    try:
        destination.commit(f.name, list(f.blocks), metadata)
        state = "succeeded" if task.checkpoint.done else "running"
        deps.jobs.put_type_progress(c.job_id, f.type, type_progress(task.checkpoint, destination, state))
    except PermanentError as exc:
        return CommitResult(type=f.type, file_name=f.name, error=str(exc))
    log.info("job %s: committed %s (%d blocks, %d resources)", c.job_id, f.name, len(f.blocks), f.resources)
    return CommitResult(
        type=f.type,
        file_name=f.name,
        block_count=len(f.blocks),
        committed_bytes=f.staged_bytes,
        committed_resources=f.resources,
        url=destination.url(f.name),
    )


def record(update: RecordUpdate, deps: Deps) -> None:
    """The orchestrators' state changes: the job's, or (with a type) that type's progress."""
    if update.resource_type is None:
        deps.jobs.update_record(update.job_id, **update.changes)
        return
    current: Mapping[str, Any] = deps.jobs.get_type_progress(update.job_id, update.resource_type) or {}
    deps.jobs.put_type_progress(
        update.job_id, update.resource_type, {**current, **update.changes, "updated": utc_now()}
    )


def finish(task: FinishTask, deps: Deps) -> None:
    """Step 9: delete what must go (partial files on cancel, always the secrets), record the end."""
    request = task.request
    if task.delete_files:
        _destination(request, deps).delete(task.delete_files)
    for name in (request.source.auth_secret_name, request.destination.secret_name):
        if name:
            deps.secrets.delete(name)
            _forget_secret(name)
    with _cache_lock:
        _cancel_seen.pop(task.job_id, None)
    deps.jobs.update_record(task.job_id, state=task.state, outcome=dict(task.outcome), finished=utc_now())
    log.info("job %s finished: %s", task.job_id, task.state)
