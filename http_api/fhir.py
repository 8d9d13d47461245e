"""The FHIR Bulk Data (IG v2) front door over the default source (EXPORT_DEFAULT_FHIR_BASE_URL).

    GET|POST  /api/fhir/$export                       system-level kick-off
    GET|POST  /api/fhir/Patient/$export               patient-level kick-off
    GET|POST  /api/fhir/Group/{group_id}/$export      group-level kick-off (members only)
    GET       /api/fhir/$export-status/{id}           202 + X-Progress | 200 manifest | 500 | 404
    DELETE    /api/fhir/$export-status/{id}           202; the status URL answers 404 afterwards
    GET       /api/fhir/$export-file/{id}/{name}      one output file (application/fhir+ndjson)

Thin adapters: `shared.bulkdata` decides, `shared.job_api` keeps the jobs, the `export_job`
orchestration does the work. Errors are OperationOutcomes (`application/fhir+json`); the job
API's error mapping (`http_api.exports.guarded`) is reused and its answers re-encoded.
Blocking work (blob and source I/O) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceNotFoundError

from http_api.exports import guarded
from shared import bulkdata, job_api
from shared.bulkdata import BulkDataError, Issue, Level
from shared.deps import Deps, get_deps
from shared.destinations.blob import container_client, storage_errors
from shared.export_tasks import CANCEL_EVENT, JOB_ORCHESTRATOR

bp = df.Blueprint()
log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ISSUE_CODES = {400: "invalid", 404: "not-found", 503: "transient"}


def _outcome(status: int, *issues: Issue, headers: dict[str, str] | None = None) -> func.HttpResponse:
    body = json.dumps(bulkdata.operation_outcome(*issues))
    return func.HttpResponse(body, status_code=status, mimetype=FHIR_JSON, headers=headers)


def _as_outcome(response: func.HttpResponse) -> func.HttpResponse:
    """Re-encode the job API's `{"error": {...}}` answers as OperationOutcomes."""
    if response.status_code < 400 or response.mimetype != "application/json":
        return response
    error = json.loads(response.get_body() or b"{}").get("error") or {}
    issue = Issue(
        _ISSUE_CODES.get(response.status_code, "exception"), str(error.get("message")), error.get("field")
    )
    headers = {"Retry-After": "10"} if response.status_code == 503 else None
    return _outcome(response.status_code, issue, headers=headers)


async def _answer(call: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    async def refusals() -> func.HttpResponse:
        try:
            return await call()
        except BulkDataError as exc:
            return _outcome(exc.status, *exc.issues)

    try:
        return _as_outcome(await guarded(refusals))
    except Exception:  # noqa: BLE001 - a FHIR client gets an OperationOutcome, never a bare 500
        log.exception("FHIR front door: unexpected error")
        return _outcome(500, Issue("exception", "internal error; the service log has the details"))


def _base(req: func.HttpRequest) -> str:
    return str(req.url).split("/api/", 1)[0] + "/api/fhir"


def _not_found(job_id: str) -> func.HttpResponse:
    return _outcome(404, Issue("not-found", f"no bulk export {job_id!r}"))


# --- kick-off -----------------------------------------------------------------------------------


def _prepare(
    req: func.HttpRequest, deps: Deps, level: Level, group_id: str | None
) -> tuple[job_api.Submitted, bulkdata.ExportPlan]:
    """Parse, consult the source, and record the job as queued (blocking: runs in a thread)."""
    lenient = bulkdata.prefers_lenient(req.headers.get("prefer"))
    pairs = bulkdata.query_pairs(req.url)
    if req.method == "POST" and (req.get_body() or b"").strip():
        try:
            body = json.loads(req.get_body())
        except ValueError:
            raise BulkDataError(
                400, Issue("invalid", "the body is not JSON (expected a FHIR Parameters resource)", "body")
            ) from None
        pairs += bulkdata.parameters_pairs(body)
    params = bulkdata.parse_kickoff(pairs, lenient=lenient)
    base_url = deps.settings.default_fhir_base_url
    if base_url is None:
        raise BulkDataError(
            500, Issue("exception", "no FHIR source is configured (EXPORT_DEFAULT_FHIR_BASE_URL)")
        )
    searchable = bulkdata.searchable_types(bulkdata.read_capability(deps.http, base_url))
    members = None
    if level == "group" and group_id is not None:
        members = bulkdata.group_members(bulkdata.read_group(deps.http, base_url, group_id), group_id)
    plan = bulkdata.plan_export(params, level=level, searchable=searchable, members=members, lenient=lenient)
    job_id = uuid.uuid4().hex
    body = bulkdata.export_body(
        plan,
        params,
        base_url=base_url,
        container=deps.settings.default_container,
        job_id=job_id,
        requested_by=bulkdata.requester(dict(req.headers), deps.settings.admin_email),
        labels=bulkdata.kickoff_labels(req.url, level, group_id),
    )
    return job_api.submit(body, deps, job_id=job_id), plan


async def _kickoff(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, level: Level, group_id: str | None = None
) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        deps = get_deps()
        submitted, plan = await asyncio.to_thread(_prepare, req, deps, level, group_id)
        job_id = submitted.job.job_id
        try:
            await client.start_new(JOB_ORCHESTRATOR, job_id, submitted.job.to_dict())
        except Exception:
            log.exception("bulk export %s: could not start the orchestration", job_id)
            await asyncio.to_thread(job_api.abandon, submitted, deps, "the export could not be started")
            return _outcome(
                503,
                Issue("transient", "the export could not be started; try again"),
                headers={"Retry-After": "10"},
            )
        log.info(
            "bulk export %s (%s) accepted for %s: %s",
            job_id,
            level,
            submitted.job.request.requested_by,
            ",".join(plan.types),
        )
        info = (
            [
                Issue(
                    "informational",
                    f"ignored under lenient handling: {', '.join(plan.ignored)}",
                    severity="information",
                )
            ]
            if plan.ignored
            else []
        )
        body = bulkdata.operation_outcome(
            Issue("informational", f"export {job_id} accepted", severity="information"), *info
        )
        headers = {"Content-Location": f"{_base(req)}/$export-status/{job_id}"}
        return func.HttpResponse(json.dumps(body), status_code=202, mimetype=FHIR_JSON, headers=headers)

    return await _answer(run)


@bp.route(route="fhir/$export", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
async def fhir_export_system(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _kickoff(req, client, "system")


@bp.route(route="fhir/Patient/$export", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
async def fhir_export_patient(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _kickoff(req, client, "patient")


@bp.route(route="fhir/Group/{group_id}/$export", methods=["GET", "POST"])
@bp.durable_client_input(client_name="client")
async def fhir_export_group(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _kickoff(req, client, "group", req.route_params["group_id"])


# --- status, cancel, download -------------------------------------------------------------------


def _view(job_id: str, deps: Deps) -> dict[str, Any] | None:
    return job_api.show(job_id, deps) if _JOB_ID.match(job_id) else None


@bp.route(route="fhir/$export-status/{id}", methods=["GET"])
async def fhir_export_status(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id = req.route_params["id"]
        view = await asyncio.to_thread(_view, job_id, get_deps())
        base = _base(req)
        answer = bulkdata.status_answer(job_id, view, lambda name: f"{base}/$export-file/{job_id}/{name}")
        if answer.body is None:
            return func.HttpResponse(status_code=answer.status, headers=dict(answer.headers))
        mimetype = "application/json" if answer.status == 200 else FHIR_JSON
        return func.HttpResponse(
            json.dumps(answer.body),
            status_code=answer.status,
            mimetype=mimetype,
            headers=dict(answer.headers),
        )

    return await _answer(run)


def _delete(job_id: str, deps: Deps) -> dict[str, Any] | None:
    """Cancel a running job, or mark a finished one deleted; None when there is nothing to delete.

    Either way the cancel marker is written: a running job stops at its next page, and status
    and files of any front-door job answer 404 from then on (`bulkdata.is_frontdoor_job`). A live
    front-door job is never cancelled yet, so the view read here is the only read needed."""
    view = _view(job_id, deps)
    if not bulkdata.is_frontdoor_job(view):
        return None
    assert view is not None
    deps.jobs.request_cancel(job_id)
    return {**view, "cancel_requested": True}


@bp.route(route="fhir/$export-status/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def fhir_export_delete(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id = req.route_params["id"]
        view = await asyncio.to_thread(_delete, job_id, get_deps())
        if view is None:
            return _not_found(job_id)
        if view["state"] not in ("succeeded", "failed"):
            try:
                await client.raise_event(job_id, CANCEL_EVENT, None)
            except Exception:  # noqa: BLE001 - the marker alone stops the work at the next page
                log.warning("bulk export %s: cancel event not delivered; the cancel marker stands", job_id)
        log.info("bulk export %s deleted by the client (was %s)", job_id, view["state"])
        body = bulkdata.operation_outcome(
            Issue("informational", f"export {job_id} deleted", severity="information")
        )
        return func.HttpResponse(json.dumps(body), status_code=202, mimetype=FHIR_JSON)

    return await _answer(run)


def _read_file(job_id: str, name: str, deps: Deps) -> bytes | None:
    where = bulkdata.export_file(_view(job_id, deps), name)
    if where is None:
        return None
    container, blob = where
    client = container_client(deps.settings.export_storage_connection, container)
    with storage_errors("download", f"{job_id}/{name}"):
        try:
            # Whole file in memory: func.HttpResponse has no streaming body (files are <= 64 MiB
            # by default, options.max_file_bytes).
            return bytes(client.download_blob(blob).readall())
        except ResourceNotFoundError:
            return None


@bp.route(route="fhir/$export-file/{id}/{name}", methods=["GET"])
async def fhir_export_file(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, name = req.route_params["id"], req.route_params["name"]
        data = await asyncio.to_thread(_read_file, job_id, name, get_deps())
        if data is None:
            return _outcome(404, Issue("not-found", f"no file {name!r} in bulk export {job_id!r}"))
        return func.HttpResponse(data, status_code=200, mimetype=NDJSON)

    return await _answer(run)
