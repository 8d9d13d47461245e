"""Orchestration-level contracts of a session's auto-export, its function names, and its pure decisions.

A *session job* (kind `session`, one per app and session, id `session_job_id(app, session)`)
exports the app's generated data under `{app}/{session}/` as it appears and when the session
completes. `session_job` (instance id = job id) asks `session_scan` what is new (the container
and the job's parts are the truth; a wake event only says "look again", so a lost or repeated
event loses or repeats nothing), runs one `session_item` per new item (at most `concurrency`
at once), waits for the next wake when idle, and continues as new after each idle wait or
`GENERATION_BUDGET` items, so its history stays bounded. Bytes never pass through here.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from shared._strict import Contract, Count, Items
from shared.auto_export_config import SessionOptions
from shared.contracts import Retry
from shared.retry import DEFAULT as DEFAULT_RETRY

__all__ = [
    "COMPLETED_MARKER",
    "FINISH_ACTIVITY",
    "FinishSession",
    "GENERATION_BUDGET",
    "ITEM_ORCHESTRATOR",
    "SCAN_ACTIVITY",
    "SCAN_BUDGET",
    "SESSION_ORCHESTRATOR",
    "TRANSFER_ACTIVITY",
    "WAKE_EVENT",
    "ItemRef",
    "ScanResult",
    "ScanTask",
    "SessionInput",
    "SessionItemInput",
    "SessionItemOutcome",
    "item_instance_id",
    "part_name",
    "session_job_id",
]

SESSION_ORCHESTRATOR: Final = "session_job"
ITEM_ORCHESTRATOR: Final = "session_item"
SCAN_ACTIVITY: Final = "session_scan"
TRANSFER_ACTIVITY: Final = "session_transfer"
FINISH_ACTIVITY: Final = "session_finish"
WAKE_EVENT: Final = "session_wake"
COMPLETED_MARKER: Final = "completed"  # the job store marker holding the completion message
# Items started by one execution before it continues as new (about 10 history events each).
GENERATION_BUDGET: Final = 100
# Scans one execution asks for (each wake asks for one) before it waits for its items and
# continues as new: a burst of new blobs during a long transfer cannot grow the history without end.
SCAN_BUDGET: Final = 50
# While idle, a session looks again this often even without a wake (a wake lost by a crash
# between the blob's write and the event), and records that it is alive (the stall check).
IDLE_RESCAN_MINUTES: Final = 30
_ID_TEXT = re.compile(r"[^A-Za-z0-9_-]+")
_PART_MAX_BYTES: Final = 700  # table RowKeys are at most 1 KiB: the store base64s the UTF-8 bytes


def session_job_id(app: str, session_id: str) -> str:
    """The job of an app's session: readable, and a digest so that different pairs never meet
    (`a-b`+`c` and `a`+`b-c`); a repeated or redelivered message finds the same job."""
    digest = hashlib.sha256(f"{app}\n{session_id}".encode()).hexdigest()[:12]
    readable = _ID_TEXT.sub("-", f"{app}-{session_id}").strip("-")[:40]
    return f"ses-{readable}-{digest}"


def part_name(path: str) -> str:
    """An item's part in the job store: its path below the session's folder, or a digest of a
    very long one."""
    if len(path.encode()) <= _PART_MAX_BYTES:
        return path
    return "sha256:" + hashlib.sha256(path.encode()).hexdigest()


def item_instance_id(job_id: str, path: str, etag: str, run: int) -> str:
    digest = hashlib.sha256(f"{path}\n{etag}".encode()).hexdigest()[:16]
    return f"{job_id}:item:{digest}:r{run}"


class SessionInput(Contract):
    job_id: str
    app: str
    session_id: str
    run: Count = 0
    started: bool = False  # the record says running
    # Set by every path that starts a run since the caps on running jobs came: a run started
    # before them (its input has no such field) replays as it was started, without the wait.
    waits_turn: bool = False
    # When the session last had new data (ISO, from the orchestration's clock): the idle timeout
    # counts from here. None until the first scan.
    last_activity: str | None = None


class ItemRef(Contract):
    path: str  # below the session's folder: what rules, parts and URL templates see
    blob: str  # the full blob name in the generated-data container
    etag: str


class ScanTask(Contract):
    job_id: str
    app: str
    session_id: str
    held: Items[str] = ()  # paths started or waiting in the orchestration: not looked at
    limit: Count = GENERATION_BUDGET
    run: Count = 0
    starting: bool = False  # the execution's first scan: record the job running (reopened if need be)


class ScanResult(Contract):
    items: Items[ItemRef] = ()  # to export, in order
    more: bool = False  # items left queued beyond `limit`
    new_data: bool = False  # anything new was seen (exported, skipped or queued)
    completed: bool = False  # the session-completed message has come
    open_items: Count = 0  # items not yet done, besides `held`
    cancelled: bool = False
    error: str | None = None  # the session cannot be exported at all (e.g. its app is not configured)
    options: SessionOptions = SessionOptions()  # the app's, read from the settings by the scan


class SessionItemInput(Contract):
    job_id: str
    app: str
    session_id: str
    item: ItemRef
    run: Count = 0
    retry: Retry = DEFAULT_RETRY
    attempt: Count = 1


class SessionItemOutcome(Contract):
    path: str
    state: str  # succeeded | failed | cancelled | skipped
    bytes: Count = 0
    error: str | None = None
    changed: bool = False  # the blob changed while it was exported: scan again


class FinishSession(Contract):
    job_id: str
    state: str  # succeeded | failed | cancelled (a success with failed items is recorded failed)
    error: str | None = None
    note: str | None = None  # why it ended without its completion message (idle timeout)
