"""What the export job API does, framework-free: submit, show, list, cancel, reconcile.

Submission validates the request (a `ValidationError` names the field), moves the secret values
into the secret store under per-job names, and writes the job record as `queued` before the
orchestration starts, so an accepted job always has a record. The views never contain secrets.
"""

from __future__ import annotations

import datetime as dt
import importlib
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import httpx

from shared import exporting
from shared.admitting import check_room
from shared.batch_contracts import BatchRequest
from shared.batch_tasks import BatchInput
from shared.callers import TRUSTED, Caller, Forbidden
from shared.contracts import (
    BlobDestinationSpec,
    ExportRequest,
    SubmittedSecrets,
    TypeCheckpoint,
    parse_export_request,
    with_secret_names,
)
from shared.deps import Deps
from shared.destination_claims import KEY_FIELD, conflicting_job, destination_key
from shared.errors import PermanentError, ValidationError
from shared.export_tasks import JOB_ORCHESTRATOR, FinishTask, JobInput, type_instance_id
from shared.jobs import JobState, is_terminal
from shared.jobstore import JobKind, JobUpdate, JobView, ListQuery, current_admission, new_record, utc_now
from shared.outbound import OutboundRefused
from shared.reconcile_plan import RuntimeStatus, Verdict, decide
from shared.secrets.base import ROLE_DESTINATION, ROLE_SOURCE_AUTH, new_secret_name
from shared.session_tasks import SessionInput
from shared.storage_policy import DestinationRefused
from shared.workstore import work_store

# Each kind other than the FHIR export (this module's own) plugs in through a module with the
# same four functions: present(view), retry(view, body, deps), settle(view, verdict, deps) and
# part_instances(view).
_KIND_MODULES: dict[str, str] = {
    JobKind.BATCH.value: "shared.batch_api",
    JobKind.SESSION.value: "shared.session_api",
}
# Labels only the service sets: they mark the front door's jobs and their SMART client, which
# the front door serves (`shared.bulkdata_status.is_frontdoor_job`, `smart_auth.may_see`).
RESERVED_LABELS: frozenset[str] = frozenset({"frontdoor", "fhir_request", "fhir_level", "fhir_group",
                                              "fhir_errors", "smart_client"})  # fmt: skip
ORIGIN_API, ORIGIN_FRONTDOOR = "api", "frontdoor"  # the record's `origin`: which entry point made it
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_CONTINUATION = re.compile(r"^[0-9]{11}-[A-Za-z0-9_-]{1,64}$")  # `jobstore.index_key`


class JobConflict(PermanentError):
    """The job is not in a state that allows the action (e.g. a retry of a running job), or it
    would write where another job writes: 409 naming `field`."""

    def __init__(self, message: str, field: str = "state") -> None:
        super().__init__(message)
        self.field = field


def claim_destination(deps: Deps, destination: Any, secret_value: str | None, labels: Mapping[str, str],
                      *, share: bool) -> str:  # fmt: skip
    """The job's destination key; JobConflict when an unfinished job writes under an overlapping
    prefix and the request does not say it may share it (`shared.destination_claims`)."""
    key = destination_key(destination, secret_value, labels)
    other = None if share else conflicting_job(deps, key)
    if other is not None:
        raise JobConflict(
            f"job {other} is writing under this destination until it ends; choose another prefix, "
            "wait, or set options.share_destination",
            "destination",
        )
    return key


@dataclass(frozen=True)
class Submitted:
    """An accepted job: its orchestration's input (`job`), its record, and which orchestration."""

    job: JobInput | BatchInput | SessionInput
    record: dict[str, Any]
    orchestrator: str = JOB_ORCHESTRATOR

    def secret_names(self) -> tuple[str, ...]:
        if isinstance(self.job, SessionInput):
            return ()  # a session's secrets are its app's, named in the configuration
        request = self.job.request
        if isinstance(request, BatchRequest):
            return request.secret_names()
        return tuple(n for n in (request.source.auth_secret_name, request.destination.secret_name) if n)


def as_caller(body: Any, caller: Caller, origin: str) -> dict[str, Any]:
    """A submission's body with `requested_by` decided by who calls (`Caller.requester`); the
    job API may not set the front door's labels."""
    if not isinstance(body, Mapping):
        raise ValidationError("body", "must be a JSON object")
    decided: dict[str, Any] = dict(body)
    labels = decided.get("labels")
    if origin == ORIGIN_API and isinstance(labels, Mapping):
        for key in labels:
            if key in RESERVED_LABELS:
                raise ValidationError(f"labels.{key}", "is set by the service, not by a request")
    requested_by = caller.requester(decided.get("requested_by"))
    if requested_by is not None:
        decided["requested_by"] = requested_by
    return decided


def submit(body: Any, deps: Deps, *, job_id: str | None = None, caller: Caller = TRUSTED,
           origin: str = ORIGIN_API) -> Submitted:  # fmt: skip
    body = as_caller(body, caller, origin)
    request, secrets = parse_export_request(
        body,
        default_base_url=deps.settings.default_fhir_base_url,
        default_container=deps.settings.default_container,
    )
    check_outbound(deps, request.source.base_url, "source.base_url")
    check_blob_destination(deps, request.destination, secrets.destination)
    check_room(deps, request.requested_by)
    key = claim_destination(deps, request.destination, secrets.destination, dict(request.labels),
                            share=request.options.share_destination)  # fmt: skip
    job_id = job_id or uuid.uuid4().hex
    auth_name, dest_name = _store_secrets(job_id, secrets, deps)
    request = with_secret_names(request, auth_secret_name=auth_name, destination_secret_name=dest_name)
    record = new_record(job_id, JobKind.FHIR_EXPORT, request.to_dict(), request.requested_by,
                        dict(request.labels), origin=origin, **{KEY_FIELD: key})  # fmt: skip
    deps.jobs.put_record(record)
    return Submitted(JobInput(job_id=job_id, request=request, waits_turn=True), record)


def _store_secrets(job_id: str, secrets: SubmittedSecrets, deps: Deps) -> tuple[str | None, str | None]:
    """Secret values into the secret store under fresh per-job names; the names."""
    auth_name = dest_name = None
    if secrets.source_auth:
        auth_name = new_secret_name(job_id, ROLE_SOURCE_AUTH)
        deps.secrets.set(auth_name, secrets.source_auth)
    if secrets.destination:
        dest_name = new_secret_name(job_id, ROLE_DESTINATION)
        deps.secrets.set(dest_name, secrets.destination)
    return auth_name, dest_name


def retry(job_id: str, body: Any, deps: Deps, caller: Caller = TRUSTED) -> Submitted | None:
    """Queue a failed job again (`POST /api/jobs/{id}/retry`); None if there is no such job.

    An export keeps what succeeded: succeeded types are not run again, and every other type
    resumes from its last commit. The job's secrets were deleted when it failed, so a job that
    had them needs them again in `body` (`source.auth_secret`, `destination.secret`); the
    outbound policy is checked again; `requeue` writes the record back as `queued`."""
    view = find(job_id, deps, caller)
    if view is None:
        return None
    if not caller.may_act(view.record):
        raise Forbidden("only operators retry jobs the system started", "id")
    record = view.record
    if record["state"] != JobState.FAILED.value:
        raise JobConflict(f"only a failed job can be retried; job {job_id} is {record['state']}")
    check_room(deps, str(record["requested_by"]))
    kind = _kind_module(record)
    if kind is not None:
        submitted: Submitted = kind.retry(view, body, deps)
        return submitted
    body = body if body is not None else {}
    if not isinstance(body, Mapping) or set(body) - {"source", "destination"}:
        raise ValidationError("body", "may only give source.auth_secret and destination.secret")
    request = ExportRequest.from_dict(record["request"])
    if request.source.patient_count and work_store(deps.settings.web_jobs_storage).patients(job_id) is None:
        # The patient list is deleted with the job's other work data when it ends.
        raise JobConflict(f"job {job_id} was restricted to a patient list that is gone; start a new export")
    given = SubmittedSecrets(
        source_auth=_secret_in(
            body, "source", "auth_secret", needed=request.source.auth_secret_name is not None
        ),
        destination=_secret_in(
            body, "destination", "secret", needed=request.destination.secret_name is not None
        ),
    )
    check_outbound(deps, request.source.base_url, "source.base_url")
    if given.destination is not None or request.destination.secret_name is None:
        check_blob_destination(deps, request.destination, given.destination)
    auth_name, dest_name = _store_secrets(job_id, given, deps)
    request = with_secret_names(request, auth_secret_name=auth_name, destination_secret_name=dest_name)
    completed, resume = [], {}
    for resource_type in request.source.types:
        progress = view.parts.get(resource_type) or {}
        if progress.get("state") == "succeeded":
            files = [f["name"] for f in progress.get("files", [])]
            completed.append({"type": resource_type, "state": "succeeded", "error": None,
                              "resources": int(progress.get("resources", 0)), "files": files})  # fmt: skip
            continue
        if progress.get("checkpoint"):
            resume[resource_type] = TypeCheckpoint.from_dict(progress["checkpoint"])
        deps.jobs.put_part(job_id, resource_type, {**progress, "state": "queued", "last_error": None})
    requeued = requeue(record, request.to_dict(), deps)
    job = JobInput(
        job_id=job_id,
        request=request,
        run=requeued["run"],
        resume=resume,
        completed=tuple(completed),
        waits_turn=True,
    )
    return Submitted(job, requeued)


def requeue(
    record: Mapping[str, Any], request: Mapping[str, Any], deps: Deps, *, run: int | None = None
) -> dict[str, Any]:
    """Write an ended job's record back as `queued` for its next run (`run`, else the last + 1),
    with its new request (new secret names). The one place a job leaves a terminal state: an
    operator's explicit retry, or new data for a session that had ended; never a replayed write
    (those go through the state table)."""
    run = int(record.get("run", 0)) + 1 if run is None else run
    requeued = {**record, "state": JobState.QUEUED.value, "request": dict(request), "run": run,
                "finished": None, "outcome": None, "last_error": None, "updated": utc_now()}  # fmt: skip
    deps.jobs.put_record(requeued)
    return requeued


def _secret_in(body: Mapping[str, Any], section: str, name: str, *, needed: bool) -> str | None:
    part = body.get(section) or {}
    value = part.get(name) if isinstance(part, Mapping) else None
    if value is not None and (not isinstance(value, str) or not value.strip()):
        raise ValidationError(f"{section}.{name}", "must be a non-empty string")
    if needed and value is None:
        raise ValidationError(
            f"{section}.{name}", "this job's secret was deleted when it failed; send it again"
        )
    return value if needed else None


def check_outbound(deps: Deps, url: str, field: str) -> None:
    """Refuse at submission a URL the outbound policy would refuse at every call (naming the
    field). A name that does not resolve now is let through: DNS may be down for a moment, and
    the job's retries cover that."""
    try:
        deps.settings.outbound.check_url(url)
    except OutboundRefused as exc:
        raise ValidationError(field, str(exc)) from None
    except httpx.ConnectError:
        pass


def check_blob_destination(deps: Deps, destination: Any, secret_value: str | None) -> None:
    """Refuse at submission a Blob destination the storage policy forbids (naming the field):
    the service's own containers, containers of its storage that DESTINATION_CONTAINERS does not
    name, an internal endpoint, an unsigned account URL (`shared.storage_policy`)."""
    if not isinstance(destination, BlobDestinationSpec):
        return
    try:
        deps.settings.destination_policy.check(secret_value, destination.container)
    except DestinationRefused as exc:
        raise ValidationError(f"destination.{exc.part}", str(exc)) from None


def abandon(submitted: Submitted, deps: Deps, reason: str) -> None:
    """The orchestration could not be started: the job did not happen; drop what submit made."""
    for name in submitted.secret_names():
        deps.secrets.delete(name)
    work_store(deps.settings.web_jobs_storage).delete_job(submitted.job.job_id)
    deps.jobs.update_record(submitted.job.job_id, JobUpdate(JobState.FAILED, last_error=reason))


def present(view: JobView) -> dict[str, Any]:
    """The status document of one job, in its kind's shape."""
    kind = _kind_module(view.record)
    if kind is None:
        return present_export(view)
    document: dict[str, Any] = kind.present(view)
    return document


def _kind_module(record: Mapping[str, Any]) -> Any:
    """The module of a job's kind, or None for a FHIR export (imported when first needed: the
    kinds' modules use this one)."""
    name = _KIND_MODULES.get(str(record.get("kind") or JobKind.FHIR_EXPORT.value))
    return importlib.import_module(name) if name else None


def status_header(view: JobView, state: str) -> dict[str, Any]:
    """The part of every kind's status document that comes from the record alone. `waiting`: why
    a queued job has not started yet (the caps on running jobs, `shared.admitting`), else None."""
    record = view.record
    queued = record["state"] == JobState.QUEUED.value
    waiting = current_admission(record).get("waiting") if queued else None
    return {
        "id": record["id"],
        "kind": record.get("kind") or JobKind.FHIR_EXPORT.value,
        "state": state,
        "requested_by": record["requested_by"],
        "labels": record.get("labels") or {},
        "created": record["created"],
        "updated": record.get("updated"),
        "started": record.get("started"),
        "finished": record.get("finished"),
        "cancel_requested": view.cancel_requested,
        "waiting": waiting,
        "origin": record.get("origin"),
        "request": record["request"],
    }


def present_export(view: JobView) -> dict[str, Any]:
    """The status document of an export."""
    record = view.record
    state = record["state"]
    types = {t: view.parts.get(t, {}) for t in record["request"]["source"]["types"]}
    if state == JobState.RUNNING.value and any(p.get("state") == "retrying" for p in types.values()):
        state = JobState.RETRYING.value
    output = [f for p in types.values() for f in p.get("files", [])]
    errors = [f"{t}: {p['last_error']}" for t, p in types.items() if p.get("last_error")]
    return {
        **status_header(view, state),
        "progress": {
            t: {
                "state": p.get("state", "queued"),
                "resources": p.get("resources", 0),
                "files": len(p.get("files", [])),
                "bytes": p.get("bytes", 0),
                "pages": p.get("pages", 0),
                "last_error": p.get("last_error"),  # the type's own reason (the job page shows it)
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
    view = find(job_id, deps)
    return present(view) if view else None


def list_query(params: Mapping[str, str], *, kind: str | None = None) -> ListQuery:
    """The listing filters of a query string; a bad one is a ValidationError naming it."""
    state = params.get("state") or None
    if state is not None and state not in {s.value for s in JobState}:
        raise ValidationError("state", f"must be one of {', '.join(s.value for s in JobState)}")
    kind = kind or params.get("kind") or None
    if kind is not None and kind not in {k.value for k in JobKind}:
        raise ValidationError("kind", f"must be one of {', '.join(k.value for k in JobKind)}")
    label = None
    if params.get("label"):
        key, sep, value = params["label"].partition("=")
        if not sep or not key:
            raise ValidationError("label", "must be key=value")
        label = (key, value)
    text = params.get("limit", "50")
    if not text.isdigit() or not 1 <= int(text) <= 500:
        raise ValidationError("limit", "must be a whole number between 1 and 500")
    continuation = params.get("continuation") or None
    if continuation is not None and not _CONTINUATION.match(continuation):
        raise ValidationError("continuation", "is not a continuation this service returned")
    return ListQuery(
        kind=kind,
        state=state,
        requested_by=params.get("requested_by") or None,
        label=label,
        created_from=_instant_param(params, "created_from", end_of_day=False),
        created_to=_instant_param(params, "created_to", end_of_day=True),
        limit=int(text),
        continuation=continuation,
    )


def _instant_param(params: Mapping[str, str], name: str, *, end_of_day: bool) -> str | None:
    """`2026-12-01` or an ISO instant, as the records' `YYYY-MM-DDTHH:MM:SSZ` (UTC)."""
    text = (params.get(name) or "").strip()
    if not text:
        return None
    try:
        if len(text) == 10:
            day = dt.date.fromisoformat(text)
            moment = dt.datetime.combine(day, dt.time(23, 59, 59) if end_of_day else dt.time(0, 0, 0), dt.UTC)
        else:
            moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError(name, "must be a date (YYYY-MM-DD) or an ISO 8601 instant") from None
    if moment.tzinfo is None:
        raise ValidationError(name, "needs a time zone (Z or +hh:mm)")
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def list_jobs(params: Mapping[str, str], deps: Deps, *, kind: str | None = None,
              caller: Caller = TRUSTED) -> dict[str, Any]:  # fmt: skip
    """One page of jobs, newest first, with the filters of `list_query`; a caller who is not an
    operator lists only its own."""
    query = list_query(params, kind=kind)
    query = replace(query, requested_by=caller.list_filter(query.requested_by))
    page = deps.jobs.list(query)
    return {
        "jobs": [
            {
                "id": j.job_id,
                "kind": j.kind,
                "state": j.state,
                "requested_by": j.requested_by,
                "labels": j.labels,
                "created": j.created,
            }
            for j in page.jobs
        ],
        "continuation": page.continuation,
    }


def valid_job_id(job_id: str) -> bool:
    """Ids this service makes (uuid hex, or the front door's); anything else names no job."""
    return bool(_JOB_ID.match(job_id))


def find(job_id: str, deps: Deps, caller: Caller = TRUSTED) -> JobView | None:
    """The job, or None when there is none or the caller may not see it (the same answer, so
    that ids of other people's jobs cannot be probed)."""
    view = deps.jobs.view(job_id) if valid_job_id(job_id) else None
    return view if view is not None and caller.may_see(view.record) else None


def active_jobs(deps: Deps, limit: int) -> list[str]:
    """Ids of jobs not yet ended (queued, running, retrying), at most `limit`."""
    found: list[str] = []
    for state in (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING):
        continuation = None
        while len(found) < limit:
            query = ListQuery(state=state.value, limit=min(500, limit), continuation=continuation)
            page = deps.jobs.list(query)
            found += [j.job_id for j in page.jobs]
            continuation = page.continuation
            if continuation is None:
                break
    return found[:limit]


def mark_cancel(job_id: str, deps: Deps, caller: Caller = TRUSTED) -> JobView | None:
    """Write the job's cancel marker unless it has ended; None if there is no such job (that the
    caller may see); Forbidden if the caller may see it but not cancel it."""
    view = find(job_id, deps, caller)
    if view is None:
        return None
    if not caller.may_act(view.record):
        raise Forbidden("only operators cancel jobs the system started", "id")
    if not is_ended(view):
        deps.jobs.request_cancel(job_id)
        view.cancel_requested = True
    return view


def part_instances(view: JobView) -> list[str]:
    """Instance ids of the part orchestrations a cancel event should reach: an export's types,
    another kind's parts under way."""
    kind = _kind_module(view.record)
    if kind is not None:
        return kind.part_instances(view)  # type: ignore[no-any-return]
    run = int(view.record.get("run", 0))
    types = view.record["request"]["source"]["types"]
    return [type_instance_id(str(view.record["id"]), t, run) for t in types]


def is_ended(view: JobView) -> bool:
    return is_terminal(JobState(view.record["state"]))


def judge(
    view: JobView, runtime: RuntimeStatus, deps: Deps, *, now: dt.datetime | None = None
) -> Verdict | None:
    """The end a job must be given because of what its orchestration did (see `reconcile_plan`)."""
    return decide(
        view.record,
        view.parts.values(),
        view.cancel_requested,
        runtime,
        now=now or dt.datetime.now(dt.UTC),
        stall_after=dt.timedelta(minutes=deps.settings.job_stall_minutes),
    )


def settle(view: JobView, verdict: Verdict, deps: Deps) -> None:
    """Record the verdict the way a job's own end is recorded: the same clean-up, the same outcome."""
    record = view.record
    kind = _kind_module(record)
    if kind is not None:
        kind.settle(view, verdict, deps)
        return
    request = ExportRequest.from_dict(record["request"])
    outcome = {
        "state": verdict.state.value,
        "error": verdict.reason,
        "resources": sum(int(p.get("resources", 0)) for p in view.parts.values()),
        "types": {t: view.parts.get(t, {}).get("state", "queued") for t in request.source.types},
    }
    exporting.finish(
        FinishTask(job_id=str(record["id"]), request=request, state=verdict.state.value, outcome=outcome),
        deps,
    )
