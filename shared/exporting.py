"""The export's units of work, one function per activity (seed 002's processing steps).

Each takes its task contract and the `Deps`, does its I/O, and returns a small outcome. Only
`TransientError` escapes (so the durable retry policy runs it again); permanent failures come
back as outcomes the orchestrator records. Page bytes go from the source straight into a staged
block here and never reach the orchestrator; so do a restricted export's patient list and the ids
that de-duplicate ORed searches, which live in the work store (`shared.workstore`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from shared.contracts import CommitResult, ExportRequest, PageResult, PageTask, TypeCheckpoint, file_name
from shared.deps import Deps
from shared.destinations.base import Destination, block_id
from shared.destinations.factory import make_destination
from shared.destinations.staged_put import StagedPutDestination
from shared.errors import PermanentError, RetryAfterError, TransientError
from shared.export_tasks import CommitAndRecord, FinishTask, JobInput, PageOutcome, RecordUpdate, StepOutcome
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobUpdate, utc_now
from shared.outcome_mail import queue_outcome
from shared.preparing import note_retrying
from shared.reconcile_plan import settle_part
from shared.sources.base import Page, Searches, Source
from shared.sources.cursor_seal import CursorSeal
from shared.sources.factory import make_source
from shared.workstore import WorkStore, work_store

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


def _work(deps: Deps) -> WorkStore:
    return work_store(deps.settings.web_jobs_storage)


_patients_cache: OrderedDict[str, tuple[str, ...]] = OrderedDict()
_kept_cache: OrderedDict[tuple[str, str, int, int], frozenset[str]] = OrderedDict()
_WORK_CACHE_SIZE = 8  # jobs (patient lists) and runs of searches (kept ids) held per process


def _cached(cache: OrderedDict[Any, Any], key: Any, load: Callable[[], Any]) -> Any:
    with _cache_lock:
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
    value = load()
    with _cache_lock:
        cache[key] = value
        while len(cache) > _WORK_CACHE_SIZE:
            cache.popitem(last=False)
    return value


def _patients(job_id: str, request: ExportRequest, deps: Deps) -> tuple[str, ...] | None:
    """The patient list a restricted export reads (stored once by the kick-off), else None."""
    if not request.source.patient_search:
        return None
    ids: tuple[str, ...] | None = _cached(_patients_cache, job_id, lambda: _work(deps).patients(job_id))
    if not ids or len(ids) != request.source.patient_count:
        with _cache_lock:
            _patients_cache.pop(job_id, None)
        raise PermanentError(
            f"the patient list of export {job_id} is missing or incomplete "
            f"(expected {request.source.patient_count} ids, found {len(ids or ())})"
        )
    return ids


_cursor_seal: tuple[Deps, CursorSeal] | None = None


def _seal(deps: Deps) -> CursorSeal:
    """The process's `CursorSeal` (it caches the sealing key) over the secret store of `deps`."""
    global _cursor_seal
    with _cache_lock:
        if _cursor_seal is None or _cursor_seal[0] is not deps:
            _cursor_seal = (deps, CursorSeal(lambda: deps.secrets))
        return _cursor_seal[1]


def _source(request: ExportRequest, deps: Deps, job_id: str) -> Source:
    secret = _secret(deps, request.source.auth_secret_name)
    return make_source(request.source, deps.http, secret, _patients(job_id, request, deps))


def _without_earlier(task: PageTask, searches: Searches, page: Page, deps: Deps) -> Page:
    """The page without resources an earlier search of its run already kept, and the ids it keeps
    stored when later searches of the run need them (ORed filters: one resource, written once).

    The earlier searches are finished before this one starts, so their ids are read once per
    process and run; after a crash they are read again from storage, not from history."""
    earlier = searches.earlier_in_run(task.query)
    if earlier:
        key = (task.job_id, task.type, earlier.start, earlier.stop)
        seen = _cached(_kept_cache, key, lambda: _work(deps).kept_ids(task.job_id, task.type, earlier))
        page = page.without(seen)
    if searches.feeds_later(task.query):
        _work(deps).put_kept_ids(task.job_id, task.type, task.query, task.page, page.line_ids())
    return page


def _destination(request: ExportRequest, deps: Deps, job_id: str) -> Destination:
    dest = request.destination
    return make_destination(dest, _secret(deps, dest.secret_name), deps.settings, http_client=deps.http,
                            job_id=job_id, labels=dict(request.labels))  # fmt: skip


def prepare(job: JobInput, deps: Deps) -> StepOutcome:
    """Steps 1-3: secrets resolve, the destination and the source answer."""
    if deps.jobs.cancel_requested(job.job_id):
        return StepOutcome(cancelled=True)
    try:
        _destination(job.request, deps, job.job_id).check_connection()
        _source(job.request, deps, job.job_id).check_connection()
    except TransientError as exc:
        note_retrying(deps, job.job_id, exc)
        raise
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
        source = _source(task.request, deps, task.job_id)
        searches = source.searches(task.type)
        page = source.fetch_page(task.type, _seal(deps).unseal(task.cursor), query=task.query)
        next_cursor = _seal(deps).seal(page.next_cursor)  # a next link's token stays out of history
        page = _without_earlier(task, searches, page, deps)
        if page.count:
            _destination(task.request, deps, task.job_id).stage(name, block, page.ndjson)
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
            result=PageResult(type=task.type, page=task.page, file_name=name, block_id=block, error=str(exc))
        )
    log.info("job %s %s page %d (search %d of %d): %d resources staged", task.job_id, task.type,
             task.page, task.query + 1, searches.count, page.count)  # fmt: skip
    return PageOutcome(
        result=PageResult(
            type=task.type,
            page=task.page,
            file_name=name,
            block_id=block,  # nothing staged when resources == 0; the orchestrator skips it
            size_bytes=page.size_bytes,
            resources=page.count,
            next_cursor=next_cursor,
            next_query=None if next_cursor else searches.next_query(task.query),
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
        # Where an operator retry resumes this type (`job_api.retry`): the committed checkpoint.
        "checkpoint": checkpoint.to_dict(),
    }
    progress.update(extra)
    return progress


def commit(task: CommitAndRecord, deps: Deps) -> CommitResult:
    """Step 7: commit the file's block list, then record the type's progress (only at commits)."""
    c = task.commit
    f = c.file
    destination = _destination(c.request, deps, c.job_id)
    metadata = {"job_id": c.job_id, "resource_type": f.type, "resources": str(f.resources)}
    try:
        destination.commit(f.name, list(f.blocks), metadata)
        after = task.checkpoint
        if isinstance(destination, StagedPutDestination) and (
            after.done or after.files[-1].sequence != f.sequence
        ):
            destination.publish(f.name)  # complete (rolled over, or the type is done): PUT it once, whole
        state = "succeeded" if task.checkpoint.done else "running"
        deps.jobs.put_part(c.job_id, f.type, type_progress(task.checkpoint, destination, state))
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
    """The orchestrators' state changes: the job's, or (with a part) that part's progress."""
    if update.part is None:
        deps.jobs.update_record(update.job_id, update.job)
        return
    current = deps.jobs.get_part(update.job_id, update.part) or {}
    deps.jobs.put_part(update.job_id, update.part, update.part_update.apply(current))


def finish(task: FinishTask, deps: Deps) -> None:
    """Step 9, and the one way any job ends (the reconciler calls it too): on cancel delete every
    file the job wrote; always delete the job's secrets; settle every part in a terminal state;
    record the outcome. Idempotent: activities run at least once, and a job already ended keeps
    its first outcome."""
    request = task.request
    view = deps.jobs.view(task.job_id)
    stored = view.parts if view is not None else {}
    if task.state == JobState.CANCELLED.value:
        recorded = {f["name"] for p in stored.values() for f in p.get("files", [])}
        names = sorted(set(task.delete_files) | recorded)
        if names:
            _destination(request, deps, task.job_id).delete(names)
    for name in (request.source.auth_secret_name, request.destination.secret_name):
        if name:
            deps.secrets.delete(name)
            _forget_secret(name)
    if request.source.patient_search or request.source.type_filters:
        _work(deps).delete_job(task.job_id)  # patient list, de-duplication ids
    with _cache_lock:
        _cancel_seen.pop(task.job_id, None)
        _patients_cache.pop(task.job_id, None)
        for key in [k for k in _kept_cache if k[0] == task.job_id]:
            del _kept_cache[key]
    if view is None or is_terminal(JobState(view.record["state"])):
        log.info("job %s had already ended; its outcome stands", task.job_id)
        queue_outcome(task.job_id, deps)  # again: a crash may have come between the two writes
        return
    error = task.outcome.get("error")
    for resource_type in request.source.types:
        current = stored.get(resource_type, {})
        settled = settle_part(current, JobState(task.state), error)
        if settled != current:
            deps.jobs.put_part(task.job_id, resource_type, {**settled, "updated": utc_now()})
    ended = JobUpdate(JobState(task.state), last_error=error, finished=utc_now(), outcome=dict(task.outcome))
    deps.jobs.update_record(task.job_id, ended)
    log.info("job %s finished: %s", task.job_id, task.state)
    queue_outcome(task.job_id, deps)
