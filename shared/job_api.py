"""What the export job API does, framework-free: submit, show, list, cancel.

Submission validates the request (a `ValidationError` names the field), moves the secret values
into the secret store under per-job names, and writes the job record as `queued` before the
orchestration starts, so an accepted job always has a record. The views never contain secrets.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from shared.contracts import parse_export_request, with_secret_names
from shared.deps import Deps
from shared.errors import ValidationError
from shared.export_tasks import JobInput
from shared.jobs import TERMINAL_STATES, JobState
from shared.jobstore import JobView, utc_now
from shared.secrets.base import ROLE_DESTINATION, ROLE_SOURCE_AUTH, new_secret_name


@dataclass(frozen=True)
class Submitted:
    job: JobInput
    record: dict[str, Any]


def submit(body: Any, deps: Deps, *, job_id: str | None = None) -> Submitted:
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object")
    request, secrets = parse_export_request(
        body,
        default_base_url=deps.settings.default_fhir_base_url,
        default_container=deps.settings.default_container,
    )
    job_id = job_id or uuid.uuid4().hex
    auth_name = dest_name = None
    if secrets.source_auth:
        auth_name = new_secret_name(job_id, ROLE_SOURCE_AUTH)
        deps.secrets.set(auth_name, secrets.source_auth)
    if secrets.destination:
        dest_name = new_secret_name(job_id, ROLE_DESTINATION)
        deps.secrets.set(dest_name, secrets.destination)
    request = with_secret_names(request, auth_secret_name=auth_name, destination_secret_name=dest_name)
    now = utc_now()
    record = {
        "id": job_id,
        "state": JobState.QUEUED.value,
        "requested_by": request.requested_by,
        "labels": dict(request.labels),
        "request": request.to_dict(),
        "created": now,
        "updated": now,
        "attempts": 0,
        "last_error": None,
    }
    deps.jobs.put_record(record)
    return Submitted(JobInput(job_id, request), record)


def abandon(submitted: Submitted, deps: Deps, reason: str) -> None:
    """The orchestration could not be started: the job did not happen; drop what submit made."""
    request = submitted.job.request
    for name in (request.source.auth_secret_name, request.destination.secret_name):
        if name:
            deps.secrets.delete(name)
    deps.jobs.update_record(submitted.job.job_id, state=JobState.FAILED.value, last_error=reason)


def present(view: JobView) -> dict[str, Any]:
    """The status document of one job."""
    record = view.record
    state = record["state"]
    types = {t: view.types.get(t, {}) for t in record["request"]["source"]["types"]}
    if state == JobState.RUNNING.value and any(p.get("state") == "retrying" for p in types.values()):
        state = JobState.RETRYING.value
    output = [f for p in types.values() for f in p.get("files", [])]
    errors = [f"{t}: {p['last_error']}" for t, p in types.items() if p.get("last_error")]
    return {
        "id": record["id"],
        "state": state,
        "requested_by": record["requested_by"],
        "labels": record.get("labels") or {},
        "created": record["created"],
        "updated": record.get("updated"),
        "started": record.get("started"),
        "finished": record.get("finished"),
        "cancel_requested": view.cancel_requested,
        "request": record["request"],
        "progress": {
            t: {
                "state": p.get("state", "queued"),
                "resources": p.get("resources", 0),
                "files": len(p.get("files", [])),
                "bytes": p.get("bytes", 0),
                "pages": p.get("pages", 0),
            }
            for t, p in types.items()
        },
        "attempts": {
            "job": record.get("attempts", 0),
            "types": {t: p.get("consecutive_failures", 0) for t, p in types.items()},
        },
        "last_error": (record.get("outcome") or {}).get("error")
        or record.get("last_error")
        or (errors[-1] if errors else None),
        "output": output,
    }


def show(job_id: str, deps: Deps) -> dict[str, Any] | None:
    view = deps.jobs.view(job_id)
    return present(view) if view else None


def list_jobs(params: Mapping[str, str], deps: Deps) -> dict[str, Any]:
    state = params.get("state") or None
    if state is not None and state not in {s.value for s in JobState}:
        raise ValidationError("state", f"must be one of {', '.join(s.value for s in JobState)}")
    label = None
    if params.get("label"):
        key, sep, value = params["label"].partition("=")
        if not sep or not key:
            raise ValidationError("label", "must be key=value")
        label = (key, value)
    try:
        limit = int(params.get("limit", "50"))
    except ValueError:
        raise ValidationError("limit", "must be an integer") from None
    if not 1 <= limit <= 500:
        raise ValidationError("limit", "must be between 1 and 500")
    page = deps.jobs.list(
        state=state,
        requested_by=params.get("requested_by") or None,
        label=label,
        limit=limit,
        continuation=params.get("continuation") or None,
    )
    return {
        "jobs": [
            {
                "id": j.job_id,
                "state": j.state,
                "requested_by": j.requested_by,
                "labels": j.labels,
                "created": j.created,
            }
            for j in page.jobs
        ],
        "continuation": page.continuation,
    }


def request_cancel(job_id: str, deps: Deps) -> dict[str, Any] | None:
    """Mark the job for cancellation; None if unknown. Terminal jobs are returned unchanged."""
    view = deps.jobs.view(job_id)
    if view is None:
        return None
    if view.record["state"] not in {s.value for s in TERMINAL_STATES}:
        deps.jobs.request_cancel(job_id)
        view.cancel_requested = True
    return present(view)
