"""What the session views and the job API do for sessions, framework-free.

- `present(view)`: a session job's status document (the job API's shape for every kind, with
  each item's outcome: `queued`, `transferring`, `retrying`, `succeeded`, `failed`, `skipped`
  with the rule that excluded it);
- `session_status(id)` / `study_status(id)`: what `GET /api/sessions/{id}` and
  `GET /api/studies/{id}` show: one word per session (queued, in progress, retrying, complete,
  failed, cancelled) and for the study as a whole, read from the job records through the
  index's session and study partitions (no scan of other jobs);
- `retry`, `settle`, `part_instances`: the job API's hooks for this kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

from shared.deps import Deps
from shared.jobs import JobState
from shared.jobstore import JobKind, JobView, ListQuery, utc_now
from shared.reconcile_plan import Verdict
from shared.session_export import counts, finish
from shared.session_tasks import COMPLETED_MARKER, SESSION_ORCHESTRATOR, FinishSession, SessionInput

if TYPE_CHECKING:  # job_api imports this module lazily; the names flow one way at run time
    from shared.job_api import Submitted

__all__ = [
    "ITEMS_SHOWN",
    "part_instances",
    "present",
    "retry",
    "session_status",
    "settle",
    "study_status",
    "word",
]

ITEMS_SHOWN: Final = 1000
MAX_SESSIONS: Final = 500  # sessions of one study shown
# The whole is as bad as its worst part: a study with one failed session is failed.
_ORDER: Final = ("failed", "retrying", "in progress", "queued", "cancelled", "complete")


def word(view: JobView) -> str:
    """The one word a person reads for a session's export."""
    state = str(view.record["state"])
    if state == JobState.SUCCEEDED.value:
        return "complete"
    if state in (JobState.FAILED.value, JobState.CANCELLED.value):
        return state
    states = {str(p.get("state") or "queued") for p in view.parts.values()}
    if "retrying" in states or state == JobState.RETRYING.value:
        return "retrying"
    if state == JobState.QUEUED.value or (states and states <= {"queued"}):
        return "queued"  # nothing has moved yet
    return "in progress"  # moving, or all done so far while the session has not completed


def combined(words: Iterable[str]) -> str:
    found = set(words)
    return next((w for w in _ORDER if w in found), "queued")


def _items(view: JobView) -> list[dict[str, Any]]:
    rows = []
    for part in sorted(view.parts.values(), key=lambda p: str(p.get("item"))):
        rows.append({
            "item": part.get("item"),
            "state": part.get("state") or "queued",
            "bytes_done": int(part.get("bytes_done") or 0),
            "bytes_total": part.get("bytes_total"),
            "attempts": int(part.get("attempts") or 0),
            "rule": part.get("rule"),
            "last_error": part.get("last_error"),
            "destination": part.get("destination"),
        })  # fmt: skip
    return rows


def present(view: JobView, *, offset: int = 0, limit: int = ITEMS_SHOWN) -> dict[str, Any]:
    from shared.job_api import status_header

    record = view.record
    items = _items(view)
    state = record["state"]
    if state == JobState.RUNNING.value and any(i["state"] == "retrying" for i in items):
        state = JobState.RETRYING.value
    request = record["request"]
    return {
        **status_header(view, state),
        "status": word(view),
        "session": {
            "app": request.get("app"),
            "session_id": request.get("session_id"),
            "study_id": (record.get("labels") or {}).get("study"),
        },  # fmt: skip
        "counts": {"items": len(items), **counts(view.parts)},
        "bytes": {
            "done": sum(i["bytes_done"] for i in items if i["state"] == "succeeded"),
            "total": sum(int(i["bytes_total"] or 0) for i in items if i["state"] != "skipped"),
        },  # fmt: skip
        "attempts": record.get("attempts", 0),
        "last_error": (record.get("outcome") or {}).get("error") or record.get("last_error"),
        "note": (record.get("outcome") or {}).get("note"),
        "items": items[offset : offset + limit],
        "items_offset": offset,
        "items_more": offset + limit < len(items),
    }


def _views(deps: Deps, label: tuple[str, str]) -> list[JobView]:
    page = deps.jobs.list(ListQuery(kind=JobKind.SESSION.value, label=label, limit=MAX_SESSIONS))
    return [v for v in (deps.jobs.view(j.job_id) for j in page.jobs) if v is not None]


def _app_status(view: JobView, deps: Deps) -> dict[str, Any]:
    document = present(view)
    keep = (
        "id",
        "state",
        "status",
        "counts",
        "bytes",
        "last_error",
        "note",
        "created",
        "updated",
        "finished",
        "items",
    )
    return {"app": document["session"]["app"], "job_id": document["id"],
            "session_completed": deps.jobs.get_marker(document["id"], COMPLETED_MARKER) is not None,
            **{k: document[k] for k in keep if k != "id"}}  # fmt: skip


def session_status(session_id: str, deps: Deps) -> dict[str, Any] | None:
    """Every app's export of one session, with each item's outcome; None when unknown."""
    views = _views(deps, ("session", session_id))
    if not views:
        return None
    apps = [_app_status(v, deps) for v in views]
    studies = sorted({str(s) for v in views if (s := (v.record.get("labels") or {}).get("study"))})
    study: str | list[str] | None = studies[0] if len(studies) == 1 else (studies or None)
    return {"session_id": session_id, "study_id": study,
            "state": combined(a["status"] for a in apps), "apps": apps}  # fmt: skip


def study_status(study_id: str, deps: Deps) -> dict[str, Any] | None:
    """Every session of one study with its word, and one word for the study; None when unknown."""
    views = _views(deps, ("study", study_id))
    if not views:
        return None
    sessions: dict[str, list[JobView]] = {}
    for view in views:
        sessions.setdefault(str(view.record["request"]["session_id"]), []).append(view)
    rows: list[dict[str, Any]] = []
    for session_id, jobs in sorted(sessions.items()):
        totals: dict[str, int] = {}
        for job in jobs:
            for state, n in counts(job.parts).items():
                totals[state] = totals.get(state, 0) + n
        rows.append({"session_id": session_id, "state": combined(word(j) for j in jobs),
                     "apps": sorted(str(j.record["request"]["app"]) for j in jobs), "counts": totals,
                     "updated": max(str(j.record.get("updated") or "") for j in jobs)})  # fmt: skip
    return {"study_id": study_id, "state": combined(str(r["state"]) for r in rows), "sessions": rows}


def settle(view: JobView, verdict: Verdict, deps: Deps) -> None:
    """The reconciler's verdict on a session, recorded by the session's own end."""
    finish(
        FinishSession(job_id=str(view.record["id"]), state=verdict.state.value, error=verdict.reason), deps
    )


def retry(view: JobView, body: Any, deps: Deps) -> Submitted:
    """Export a failed session's failed items again (its other items stay done)."""
    from shared.errors import ValidationError
    from shared.job_api import Submitted, requeue  # noqa: F811 - at run time

    if body not in (None, {}):
        raise ValidationError("body", "a session's retry takes no body (its secrets are the app's)")
    job_id = str(view.record["id"])
    for name, part in view.parts.items():
        if part.get("state") in ("failed", "cancelled"):
            deps.jobs.put_part(job_id, name, {**part, "state": "queued", "etag": None, "last_error": None,
                                              "updated": utc_now()})  # fmt: skip
    requeued = requeue(view.record, view.record["request"], deps)
    request: Mapping[str, Any] = view.record["request"]
    job = SessionInput(job_id=job_id, app=str(request["app"]), session_id=str(request["session_id"]),
                       run=int(requeued["run"]), waits_turn=True)  # fmt: skip
    return Submitted(job, requeued, SESSION_ORCHESTRATOR)


def part_instances(view: JobView) -> list[str]:
    """The item orchestrations a cancel event should reach: those under way."""
    return [str(p["instance"]) for p in view.parts.values()
            if p.get("state") in ("transferring", "retrying") and p.get("instance")]  # fmt: skip
