"""A session's way in: the session-completed message and new generated data open its job.

Both triggers call one function here, then `control.durable.run_session` makes sure the job's
orchestration runs and wakes it. Neither writes the record of a job that exists (its
orchestration does, in `session_export.scan`), so the two never overwrite each other:

- `blob_arrived(path)`: a blob `{app}/{session}/{name}` of an app that exports as data appears
  creates the session's job if it has none, or asks for the next run of one that ended and has
  not seen this version (a blob changed after the export is exported again, once);
- `session_completed(text)`: the message is checked (a `ValidationError` names the field),
  kept beside the record (the orchestration reads it), and the job is created if need be; a
  repeated message changes nothing. A message for an app with no configuration still gets its
  job, which fails saying so: an error a user sees, not a silent drop.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import Field, field_validator, model_validator

from shared._strict import Contract, Items, fail, validate
from shared.auto_export_config import APP_NAME
from shared.contracts import Email
from shared.deps import Deps
from shared.errors import ValidationError
from shared.items.blob import check_blob_path
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobKind, new_record
from shared.session_export import DONE, session_prefix, version
from shared.session_tasks import COMPLETED_MARKER, SessionInput, part_name, session_job_id

__all__ = [
    "AUTO_REQUESTER",
    "Opened",
    "SessionCompleted",
    "blob_arrived",
    "parse_completion",
    "session_completed",
]

log = logging.getLogger(__name__)

# Who a session job is for when its message names nobody: `.invalid` gets no report mail, but
# failures still alert the admins.
AUTO_REQUESTER: Final = "auto-export@sessions.invalid"
MAX_MESSAGE_BYTES: Final = 1024 * 1024
MAX_ITEMS: Final = 10_000
_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
SessionId = Annotated[str, Field(pattern=_ID)]


class SessionCompleted(Contract):
    session_id: SessionId
    app: Annotated[str, Field(pattern=APP_NAME.pattern)]
    study_id: SessionId | None = None
    prefix: Annotated[str, Field(min_length=1, max_length=1024)] | None = None
    items: Annotated[Items[str], Field(max_length=MAX_ITEMS)] | None = None  # paths below the folder
    requested_by: Email | None = None

    @field_validator("items")
    @classmethod
    def _blob_paths(cls, items: tuple[str, ...] | None) -> tuple[str, ...] | None:
        for i, item in enumerate(items or ()):
            try:
                check_blob_path(item)
            except ValidationError as exc:
                fail(exc.detail, i)
        return items

    @model_validator(mode="after")
    def _inside_the_session(self) -> SessionCompleted:
        folder = session_prefix(self.app, self.session_id)
        if self.prefix is not None:
            inside = self.prefix.removesuffix("/") + "/"
            try:
                check_blob_path(inside.removesuffix("/"))  # no empty, "." or ".." segments
            except ValidationError as exc:
                fail(exc.detail.replace("a blob path", "a prefix"), "prefix")
            if not inside.startswith(folder):
                fail(f"must be the session's folder {folder!r} or a folder in it", "prefix")
        if self.items is not None and not self.items:
            fail("must name at least one item (or leave items out to export the whole folder)", "items")
        return self

    def folder(self) -> str:
        prefix = self.prefix or session_prefix(self.app, self.session_id)
        return prefix if prefix.endswith("/") else prefix + "/"


def parse_completion(text: str | bytes) -> SessionCompleted:
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ValidationError("message", f"is larger than {MAX_MESSAGE_BYTES} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = None
    if not isinstance(data, dict):
        raise ValidationError("message", "is not a JSON object")
    return validate(SessionCompleted, data)


@dataclass(frozen=True)
class Opened:
    """What a trigger found: the job, and the input of the execution to run if none runs."""

    job_id: str
    input: SessionInput
    reopen: bool = False  # the job had ended: `input` is its next run


def _first_record(
    job_id: str, app: str, session_id: str, study_id: str | None, requested_by: str | None
) -> dict[str, Any]:
    labels = {"app": app, "session": session_id, **({"study": study_id} if study_id else {})}
    request = {"app": app, "session_id": session_id}
    return new_record(job_id, JobKind.SESSION, request, requested_by or AUTO_REQUESTER, labels)


def _open(deps: Deps, job_id: str, record: dict[str, Any], *, new_data: bool) -> Opened | None:
    app, session_id = record["request"]["app"], record["request"]["session_id"]
    existing = deps.jobs.get_record(job_id)
    if existing is None:
        if deps.jobs.create_record(record):
            log.info("session %s of app %s: job %s created", session_id, app, job_id)
            return Opened(
                job_id, SessionInput(job_id=job_id, app=app, session_id=session_id, waits_turn=True)
            )
        existing = deps.jobs.get_record(job_id)  # another trigger created it a moment ago
        if existing is None:
            return None
    run = int(existing.get("run", 0))
    state = JobState(existing["state"])
    if not is_terminal(state):
        return Opened(
            job_id, SessionInput(job_id=job_id, app=app, session_id=session_id, run=run, waits_turn=True)
        )
    if not new_data or state is JobState.CANCELLED:  # a cancelled session stays cancelled
        return None
    return Opened(
        job_id,
        SessionInput(job_id=job_id, app=app, session_id=session_id, run=run + 1, waits_turn=True),
        reopen=True,
    )


def split_blob_path(name: str) -> tuple[str, str, str] | None:
    """`{app}/{session}/{path}` of a blob (the trigger's `container/...` prefix removed)."""
    parts = name.split("/", 2)
    if len(parts) < 3 or not parts[2] or not APP_NAME.match(parts[0]) or not re.match(_ID, parts[1]):
        return None  # no session-completed message could name such a session
    return parts[0], parts[1], parts[2]


def blob_arrived(name: str, etag: str, deps: Deps) -> Opened | None:
    """A new or changed blob of generated data (its name below the container); the job to run
    or wake, or None when it is not exported as it appears (no such app, disabled, session-end
    timing, already done at this version)."""
    found = split_blob_path(name)
    if found is None:
        log.info("generated data %r is not under {app}/{session}/: not exported", name)
        return None
    app, session_id, path = found
    config = deps.settings.auto_export.app(app)
    if config is None or not config.enabled or config.timing != "as_available":
        log.info("generated data %r: app %s does not export as data appears", name, app)
        return None
    job_id = session_job_id(app, session_id)
    part = deps.jobs.get_part(job_id, part_name(path)) or {}
    done = part.get("etag") == version(etag) and part.get("state") in DONE
    return _open(deps, job_id, _first_record(job_id, app, session_id, None, None), new_data=not done)


def session_completed(message: SessionCompleted, deps: Deps) -> Opened | None:
    """Keep the completion beside the job (the orchestration reads it) and open the job. A
    repeated message (the same completion) opens nothing that ended; a disabled app's
    session has no job."""
    config = deps.settings.auto_export.app(message.app)
    if config is not None and not config.enabled:
        log.info("session %s: auto-export is disabled for app %s", message.session_id, message.app)
        return None
    if config is None:
        log.error("session %s: app %s is not configured for auto-export (AUTO_EXPORT_CONFIG)",
                  message.session_id, message.app)  # fmt: skip
    job_id = session_job_id(message.app, message.session_id)
    completion = {"session_id": message.session_id, "app": message.app, "study_id": message.study_id,
                  "prefix": message.folder(), "items": list(message.items) if message.items else None}  # fmt: skip
    before = deps.jobs.get_marker(job_id, COMPLETED_MARKER)
    deps.jobs.put_marker(job_id, COMPLETED_MARKER, completion)
    record = _first_record(job_id, message.app, message.session_id, message.study_id, message.requested_by)
    return _open(deps, job_id, record, new_data=before != completion)
