"""A session's units of work, one function per activity: scan, transfer an item, finish.

The generated-data container is the truth of what a session has (`{app}/{session}/...`, or the
completion message's explicit items), the job's parts the truth of what was done with it: each
item's part holds its path, the ETag it was queued or exported at, its state (`queued`,
`transferring`, `retrying`, `succeeded`, `failed`, `skipped` with the rule that excluded it) and
bytes. `scan` compares the two and queues what is new or changed; only the orchestration calls it,
and it never writes the part of an item the orchestration holds, so each part has one writer at a
time. Only `TransientError` escapes `transfer` (the item orchestration waits and tries again).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError

from shared.auto_export_config import AppConfig
from shared.delivery import Cancelled, PartProgress, deliver
from shared.deps import Deps
from shared.destinations.blob import storage_errors
from shared.destinations.http_put import PutDestinationSpec
from shared.error_text import readable
from shared.errors import PermanentError, TransientError
from shared.items.blob import BlobItemSource
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobUpdate, utc_now
from shared.outcome_mail import queue_outcome
from shared.session_tasks import (
    COMPLETED_MARKER,
    FinishSession,
    ItemRef,
    ScanResult,
    ScanTask,
    SessionItemInput,
    SessionItemOutcome,
    item_instance_id,
    part_name,
)

__all__ = ["FinishSession", "finish", "scan", "session_prefix", "transfer"]

log = logging.getLogger(__name__)

DONE: Final = frozenset({"succeeded", "failed", "skipped", "cancelled"})
_NEEDS_STUDY: Final = "waiting for the study id (it comes with the session-completed message)"


def version(etag: object) -> str:
    """A blob's ETag in one spelling: listings give it bare, property reads and the trigger quoted."""
    return str(etag or "").strip().strip('"')


def session_prefix(app: str, session_id: str) -> str:
    return f"{app}/{session_id}/"


@dataclass(frozen=True)
class _Blob:
    path: str
    blob: str
    etag: str
    size: int
    content_type: str


def _source(deps: Deps) -> BlobItemSource:
    return BlobItemSource.connect(deps.settings.web_jobs_storage, deps.settings.generated_data_container)


def _listed(deps: Deps, prefix: str, completion: Mapping[str, Any] | None) -> Iterator[_Blob | str]:
    """The session's blobs (or, for an explicit item list, the path of each one that is missing)."""
    container = _source(deps).container_client
    if completion and completion.get("items"):
        for path in completion["items"]:
            blob = container.get_blob_client(prefix + path)
            with storage_errors("read properties of blob", prefix + path):
                try:
                    props = blob.get_blob_properties()
                except ResourceNotFoundError:
                    yield str(path)
                    continue
            yield _Blob(str(path), prefix + path, version(props.etag), int(props.size),
                        props.content_settings.content_type or "application/octet-stream")  # fmt: skip
        return
    with storage_errors("list generated data", prefix):
        for props in container.list_blobs(name_starts_with=prefix):
            path = str(props.name)[len(prefix) :]
            if path and not path.endswith("/"):
                yield _Blob(path, str(props.name), version(props.etag), int(props.size or 0),
                            props.content_settings.content_type or "application/octet-stream")  # fmt: skip


def _values(record: Mapping[str, Any], path: str) -> dict[str, str]:
    request = record["request"]
    values = {"app": str(request["app"]), "session": str(request["session_id"]), "path": path,
              "name": path.rsplit("/", 1)[-1]}  # fmt: skip
    study = (record.get("labels") or {}).get("study")
    if study:
        values["study"] = str(study)
    return values


def _app(deps: Deps, app: str) -> AppConfig | None:
    config = deps.settings.auto_export.app(app)
    return config if config is not None and config.enabled else None


def scan(task: ScanTask, deps: Deps) -> ScanResult:
    """What the session has that is not done: items to export (at most `task.limit`), and whether
    the session is complete. Writes the parts of new items (`queued`, or `skipped` with the rule)."""
    job_id = task.job_id
    if deps.jobs.cancel_requested(job_id):
        return ScanResult(cancelled=True)
    config = _app(deps, task.app)
    if config is None:
        return ScanResult(
            error=f"app {task.app!r} is not configured for auto-export (setting AUTO_EXPORT_CONFIG)"
        )
    view = deps.jobs.view(job_id)
    if view is None:
        raise PermanentError(f"session job {job_id} has no record")
    record, parts = view.record, view.parts
    if task.starting:
        ended = _start(deps, record, task.run)
        if ended:
            return ScanResult(error=ended)
        record = deps.jobs.get_record(job_id) or record
    completion = deps.jobs.get_marker(job_id, COMPLETED_MARKER)
    has_study = _label_study(deps, record, completion)
    if config.timing == "session_end" and completion is None:
        return ScanResult()
    prefix = str((completion or {}).get("prefix") or session_prefix(task.app, task.session_id))
    held = set(task.held)
    needs_study = (
        isinstance(config.destination, PutDestinationSpec) and "study" in config.destination.placeholders()
    )
    found: list[ItemRef] = []
    more = new_data = False
    open_items = 0
    seen: set[str] = set()
    for listed in _listed(deps, prefix, completion):
        path = listed if isinstance(listed, str) else listed.path
        seen.add(path)
        if path in held:
            continue
        name = part_name(path)
        part = parts.get(name) or {}
        if isinstance(listed, str):
            if part.get("state") != "failed":
                deps.jobs.put_part(job_id, name, {"item": path, "state": "failed", "etag": None, "updated": utc_now(),
                                                  "last_error": "not found in the generated data"})  # fmt: skip
                new_data = True
            continue
        state = part.get("state")
        if part.get("etag") == listed.etag and state in DONE:
            continue  # exported (or excluded, or failed for good) at this version
        decision = config.decide(path, listed.content_type)
        base = {"item": path, "blob": listed.blob, "etag": listed.etag, "bytes_total": listed.size,
                "content_type": listed.content_type, "rule": decision.rule}  # fmt: skip
        if not decision.export:
            deps.jobs.put_part(job_id, name, {**base, "state": "skipped", "updated": utc_now(),
                                              "last_error": f"excluded by rule {decision.rule}"})  # fmt: skip
            new_data = True
            continue
        waiting = needs_study and not has_study
        if waiting and completion is not None:  # the completion came without a study id
            if state != "failed" or part.get("etag") != listed.etag:
                deps.jobs.put_part(job_id, name, {**base, "state": "failed", "updated": utc_now(),
                                                  "last_error": "the destination's URL needs {study} and the "
                                                  "session-completed message gave no study_id"})  # fmt: skip
                new_data = True
            continue
        open_items += 1
        if (
            state != "queued"
            or part.get("etag") != listed.etag
            or part.get("last_error") != (_NEEDS_STUDY if waiting else None)
        ):
            deps.jobs.put_part(job_id, name, {**base, "state": "queued", "bytes_done": 0, "attempts": 0,
                                              "last_error": _NEEDS_STUDY if waiting else None, "updated": utc_now()})  # fmt: skip
            new_data = True
        if waiting:
            continue
        if len(found) < task.limit:
            found.append(ItemRef(path=path, blob=listed.blob, etag=listed.etag))
        else:
            more = True
    if completion is not None:
        _settle_vanished(deps, job_id, parts, seen | held)
    return ScanResult(items=tuple(found), more=more, new_data=new_data, completed=completion is not None,
                      open_items=open_items, options=config.options)  # fmt: skip


def _start(deps: Deps, record: Mapping[str, Any], run: int) -> str | None:
    """Record the job running at its execution's first scan: a job that ended is opened again
    for a later run (new data after its end: `sessions.open_session` starts run + 1). The
    reason when this execution must not run (its run already ended)."""
    from shared.job_api import requeue  # job_api imports the kinds' modules

    state = JobState(record["state"])
    if is_terminal(state):
        if run <= int(record.get("run", 0)):
            return f"run {run} of this session has already ended ({state.value})"
        record = requeue(record, record["request"], deps, run=run)
    started = record.get("started") or utc_now()
    deps.jobs.update_record(str(record["id"]), JobUpdate(JobState.RUNNING, started=started))
    return None


def _label_study(deps: Deps, record: Mapping[str, Any], completion: Mapping[str, Any] | None) -> bool:
    """The completion message names the study: label the job with it (the study's index).
    Whether the job knows its study."""
    study = (completion or {}).get("study_id")
    labels = dict(record.get("labels") or {})
    if study and labels.get("study") != study:
        deps.jobs.update_record(str(record["id"]), JobUpdate(labels={**labels, "study": str(study)}))
        return True
    return bool(labels.get("study"))


def _settle_vanished(
    deps: Deps, job_id: str, parts: Mapping[str, Mapping[str, Any]], present: set[str]
) -> None:
    """Items queued earlier whose blob is gone by the session's end were deleted by their app
    (scratch data): skipped, not failed."""
    for name, part in parts.items():
        if part.get("item") not in present and part.get("state") not in DONE:
            deps.jobs.put_part(job_id, name, {**part, "state": "skipped", "rule": "deleted",
                                              "last_error": "deleted before it was exported", "updated": utc_now()})  # fmt: skip


def transfer(task: SessionItemInput, deps: Deps) -> SessionItemOutcome:
    """Export one item at its current version; TransientError when it may work next time."""
    job_id, ref = task.job_id, task.item
    name = part_name(ref.path)
    previous = deps.jobs.get_part(job_id, name) or {"item": ref.path, "blob": ref.blob}
    if deps.jobs.cancel_requested(job_id):
        return _ended(deps, task, previous, "cancelled", None)
    config = _app(deps, task.app)
    if config is None:
        return _ended(
            deps, task, previous, "failed", f"app {task.app!r} is no longer configured for auto-export"
        )
    record = deps.jobs.get_record(job_id) or {}
    source = _source(deps)
    base: dict[str, Any] = {**previous, "state": "transferring", "attempts": task.attempt, "bytes_done": 0,
                            "last_error": None, "instance": item_instance_id(job_id, ref.path, ref.etag, task.run)}  # fmt: skip
    try:
        try:
            info = source.stat(ref.blob)
        except PermanentError:
            return _ended(
                deps, task, {**previous, "rule": "deleted"}, "skipped", "deleted before it was exported"
            )
        base.update(etag=version(info.version), bytes_total=info.size, content_type=info.content_type)
        deps.jobs.put_part(job_id, name, {**base, "updated": utc_now()})
        result, where = deliver(source, ref.blob, config.destination, deps, values=_values(record, ref.path),
                                blob_path=f"{task.app}/{task.session_id}/{ref.path}", job_id=job_id,
                                progress=PartProgress(deps, job_id, name, base))  # fmt: skip
    except Cancelled:
        return _ended(deps, task, base, "cancelled", None)
    except TransientError as exc:
        deps.jobs.put_part(
            job_id, name, {**base, "state": "retrying", "last_error": readable(exc), "updated": utc_now()}
        )
        raise
    except PermanentError as exc:
        log.warning("session %s item %s failed permanently: %s", job_id, ref.path, exc)
        return _ended(deps, task, base, "failed", readable(exc))
    deps.jobs.put_part(job_id, name, {**base, "state": "succeeded", "etag": version(result.source_version), "bytes_done": result.size,
                                      "bytes_total": result.size, "destination": where, "updated": utc_now()})  # fmt: skip
    log.info("session %s item %s: %d bytes to %s", job_id, ref.path, result.size, where)
    return SessionItemOutcome(path=ref.path, state="succeeded", bytes=result.size,
                              changed=version(result.source_version) != ref.etag)  # fmt: skip


def _ended(
    deps: Deps, task: SessionItemInput, part: Mapping[str, Any], state: str, error: str | None
) -> SessionItemOutcome:
    deps.jobs.put_part(task.job_id, part_name(task.item.path),
                       {**part, "state": state, "last_error": error, "attempts": task.attempt, "updated": utc_now()})  # fmt: skip
    return SessionItemOutcome(path=task.item.path, state=state, error=error)


def record_item_failure(deps: Deps, task: SessionItemInput, error: str) -> SessionItemOutcome:
    """The item ran out of attempts (the item orchestration's last word)."""
    part = deps.jobs.get_part(task.job_id, part_name(task.item.path)) or {"item": task.item.path}
    return _ended(deps, task, part, "failed", error)


def counts(parts: Mapping[str, Mapping[str, Any]]) -> dict[str, int]:
    found: dict[str, int] = {}
    for part in parts.values():
        state = str(part.get("state") or "queued")
        found[state] = found.get(state, 0) + 1
    return found


def finish(task: FinishSession, deps: Deps) -> None:
    """The session's end (also the reconciler's): settle the items under way, record the outcome,
    queue the outcome mail. Idempotent; a session already ended keeps its first outcome. The
    destination's secrets belong to the app's configuration and stay."""
    view = deps.jobs.view(task.job_id)
    if view is None or is_terminal(JobState(view.record["state"])):
        queue_outcome(task.job_id, deps)
        return
    state = JobState(task.state)
    for name, part in view.parts.items():
        if part.get("state") not in DONE:
            settled = "cancelled" if state is JobState.CANCELLED else "failed"
            error = (
                None if settled == "cancelled" else (part.get("last_error") or task.error or "did not finish")
            )
            deps.jobs.put_part(
                task.job_id, name, {**part, "state": settled, "last_error": error, "updated": utc_now()}
            )
    parts = deps.jobs.view(task.job_id)
    found = counts(parts.parts if parts else {})
    error = task.error
    failed = [p for p in (parts.parts if parts else {}).values() if p.get("state") == "failed"]
    if error is None and failed:
        first = min(failed, key=lambda p: str(p.get("item")))
        error = f"{len(failed)} item(s) failed; {first.get('item')}: {first.get('last_error')}"
    if state is JobState.SUCCEEDED and failed:
        state = JobState.FAILED
    outcome = {"state": state.value, "error": error, "note": task.note, "items": sum(found.values()), **found}
    deps.jobs.update_record(
        task.job_id, JobUpdate(state, last_error=error, finished=utc_now(), outcome=outcome)
    )
    log.info("session %s finished: %s %s", task.job_id, state.value, found)
    queue_outcome(task.job_id, deps)
