"""The FHIR Bulk Data front door's answers after the kick-off, framework-free: a job view
(`job_api.show`) in, the status answer (202 + X-Progress | 200 manifest with `Expires` | 500 |
404) and the blob behind a file URL out. Also the labels that mark a front-door job, which the
kick-off (`shared.bulkdata`, which re-exports all of this) writes. Pure, no I/O; `now` is
injectable wherever expiry matters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any, Final

from shared.operation_outcome import Issue, operation_outcome

__all__ = [
    "ERRORS_LABEL",
    "ERROR_FILE",
    "FILE_RETENTION",
    "FRONTDOOR_LABEL",
    "MAX_PROGRESS_CHARS",
    "REQUEST_LABEL",
    "StatusAnswer",
    "expires",
    "export_file",
    "is_frontdoor_job",
    "manifest",
    "progress_text",
    "retry_after_seconds",
    "status_answer",
]

FRONTDOOR_LABEL: Final = ("frontdoor", "fhir")
REQUEST_LABEL: Final = "fhir_request"
MAX_PROGRESS_CHARS: Final = 99  # the IG: X-Progress is under 100 characters
# How long a completed export's files are served (the status answer's `Expires`): a week gives a
# client that polls daily, or a weekend batch, time to download; then status and files are 404.
FILE_RETENTION: Final = timedelta(days=7)
# The manifest's error file: what lenient handling ignored, one OperationOutcome a line. Its name
# cannot clash with an output file (`Type-N.ndjson`); the label holds how many lines it has.
ERROR_FILE: Final = "errors.ndjson"
ERRORS_LABEL: Final = "fhir_errors"

_FILE_NAME: Final = re.compile(r"^[A-Z][A-Za-z]{1,63}-[1-9][0-9]{0,8}\.ndjson$")
_PENDING: Final = {"queued": 1, "running": 2, "retrying": 5}  # state -> Retry-After seconds


@dataclass(frozen=True)
class StatusAnswer:
    status: int
    headers: Mapping[str, str]
    body: dict[str, Any] | None  # a manifest (200), an OperationOutcome (4xx/5xx), or None (202)


def is_frontdoor_job(view: Mapping[str, Any] | None) -> bool:
    """A live job the front door started: deleted (cancel marker) and cancelled jobs are gone."""
    if view is None or view.get("cancel_requested") or view.get("state") == "cancelled":
        return False
    origin = view.get("origin")
    if origin is not None:  # set by the entry point that made the job; labels can be asked for
        return bool(origin == "frontdoor")
    # A record from before `origin` (the job API now refuses the front door's labels).
    return bool((view.get("labels") or {}).get(FRONTDOOR_LABEL[0]) == FRONTDOOR_LABEL[1])


def progress_text(view: Mapping[str, Any]) -> str:
    """`running: 1 of 3 types done, 1,234 resources` (always under 100 characters)."""
    state = str(view.get("state"))
    progress: Mapping[str, Mapping[str, Any]] = view.get("progress") or {}
    if state == "queued" or not progress:
        return state[:MAX_PROGRESS_CHARS]
    done = sum(1 for p in progress.values() if p.get("state") == "succeeded")
    resources = sum(int(p.get("resources", 0)) for p in progress.values())
    head = "retrying after an error" if state == "retrying" else state
    return f"{head}: {done} of {len(progress)} types done, {resources:,} resources"[:MAX_PROGRESS_CHARS]


def retry_after_seconds(state: str) -> int:
    return _PENDING.get(state, 2)


def manifest(view: Mapping[str, Any], file_url: Callable[[str], str]) -> dict[str, Any]:
    """The IG's completion manifest; files in the request's type order, then by sequence."""
    order = {t: i for i, t in enumerate(view["request"]["source"]["types"])}
    files = sorted(view.get("output") or [], key=lambda f: (order.get(f["type"], len(order)), f["sequence"]))
    return {
        # The kick-off time: it precedes every read of the source, so a follow-up export with
        # `_since=transactionTime` misses no change (it may repeat a few).
        "transactionTime": view["created"],
        "request": (view.get("labels") or {}).get(REQUEST_LABEL, ""),
        # Downloads need what the kick-off needed: the same SMART client's bearer token (or a key).
        "requiresAccessToken": True,
        "output": [{"type": f["type"], "url": file_url(f["name"]), "count": f["count"]} for f in files],
        "error": [
            {"type": "OperationOutcome", "url": file_url(ERROR_FILE), "count": n} for n in _errors(view)
        ],
    }


def _errors(view: Mapping[str, Any]) -> list[int]:
    """[the number of OperationOutcomes in the job's error file], or [] when it has none."""
    count = str((view.get("labels") or {}).get(ERRORS_LABEL) or "")
    return [int(count)] if count.isdigit() and int(count) > 0 else []


def expires(view: Mapping[str, Any]) -> datetime:
    """When a completed export's files stop being served: `FILE_RETENTION` after it finished."""
    finished = str(view.get("finished") or view.get("updated") or view["created"])
    return datetime.fromisoformat(finished) + FILE_RETENTION


def _expired(view: Mapping[str, Any], now: datetime | None) -> bool:
    return (now or datetime.now(UTC)) >= expires(view)


def status_answer(
    job_id: str, view: Mapping[str, Any] | None, file_url: Callable[[str], str], now: datetime | None = None
) -> StatusAnswer:
    """What `GET` on the status URL answers for the job view `job_api.show` returned; a
    completed export's answer `Expires` when its files stop being served (404 afterwards)."""
    gone = StatusAnswer(404, {}, operation_outcome(Issue("not-found", f"no bulk export {job_id!r}")))
    if not is_frontdoor_job(view):
        return gone
    assert view is not None  # is_frontdoor_job(None) is False
    state = str(view["state"])
    if state in _PENDING:
        headers = {"X-Progress": progress_text(view), "Retry-After": str(retry_after_seconds(state))}
        return StatusAnswer(202, headers, None)
    if state == "succeeded":
        if _expired(view, now):
            return gone
        return StatusAnswer(
            200, {"Expires": format_datetime(expires(view), usegmt=True)}, manifest(view, file_url)
        )
    reason = view.get("last_error") or "no reason was recorded"
    return StatusAnswer(500, {}, operation_outcome(Issue("exception", f"the export failed: {reason}")))


def export_file(
    view: Mapping[str, Any] | None, name: str, now: datetime | None = None
) -> tuple[str, str] | None:
    """(container, blob name) of one output or error file of a finished, unexpired front-door
    job, else None.

    Only names the job's own manifest lists are served, so no request can reach a blob outside
    the job's prefix."""
    if not (_FILE_NAME.match(name) or name == ERROR_FILE) or not is_frontdoor_job(view):
        return None
    assert view is not None
    listed = {f["name"] for f in view.get("output") or []} | ({ERROR_FILE} if _errors(view) else set())
    if view["state"] != "succeeded" or name not in listed or _expired(view, now):
        return None
    destination = view["request"]["destination"]
    prefix = destination.get("path_prefix") or ""
    return str(destination["container"]), f"{prefix}/{name}" if prefix else name
