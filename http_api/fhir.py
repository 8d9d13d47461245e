"""The FHIR Bulk Data (IG v2) front door over the default source (EXPORT_DEFAULT_FHIR_BASE_URL).

    GET|POST  /api/fhir/$export                       system-level kick-off
    GET|POST  /api/fhir/Patient/$export               patient-level kick-off
    GET|POST  /api/fhir/Group/{group_id}/$export      group-level kick-off (members only)
    GET       /api/fhir/$export-status/{id}           202 + X-Progress | 200 manifest | 500 | 404
    DELETE    /api/fhir/$export-status/{id}           202; the status URL answers 404 afterwards
    GET       /api/fhir/$export-file/{id}/{name}      one output or error file (application/fhir+ndjson)
    GET       /api/fhir/metadata                      the CapabilityStatement (anonymous)

Thin adapters: `shared.bulkdata` decides, `shared.job_api` keeps the jobs, the `export_job`
orchestration does the work. Errors are OperationOutcomes (`application/fhir+json`); the job
API's error mapping (`http_api.exports.guarded`) is reused and its answers re-encoded.
Blocking work (blob and source I/O) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError

from control import durable
from http_api.callers import public_base
from http_api.exports import guarded
from shared import bulkdata, capability, job_api, smart_auth
from shared.bulkdata import BulkDataError, Issue, Level
from shared.deps import Deps, get_deps
from shared.destinations.blob import container_client, storage_errors
from shared.request_body import parse_json
from shared.smart_auth import Principal
from shared.workstore import work_store

bp = df.Blueprint()
log = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
NDJSON = "application/fhir+ndjson"
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
_ISSUE_CODES = {400: "invalid", 404: "not-found", 429: "throttled", 503: "transient"}


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
    headers = None
    if response.status_code == 503:
        headers = {"Retry-After": "10"}
    elif response.status_code == 429:  # over the caller's rate or MAX_OPEN_JOBS_PER_USER: its own wait
        headers = {"Retry-After": response.headers.get("Retry-After", "60")}
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
    return public_base(req) + "/api/fhir"


def _public_url(req: func.HttpRequest) -> str:
    """The request's URL on the public base (the manifest's `request`), never on its `Host`."""
    parts = urlsplit(str(req.url))
    return public_base(req) + parts.path + (f"?{parts.query}" if parts.query else "")


def _not_found(job_id: str) -> func.HttpResponse:
    return _outcome(404, Issue("not-found", f"no bulk export {job_id!r}"))


async def _authorized(
    req: func.HttpRequest, handle: Callable[[Principal], Awaitable[func.HttpResponse]]
) -> func.HttpResponse:
    """The front door's one authorization check; its routes are anonymous at the host so that
    Bulk Data clients can call them. A SMART access token (`Authorization: Bearer`), or for the
    service's own clients a FHIR_FRONTDOOR_KEYS key (`x-functions-key` or `?code=`); else 401."""

    async def check() -> func.HttpResponse:
        smart = get_deps().smart
        try:
            principal = await asyncio.to_thread(smart.authenticate, req.headers, req.params)
        except smart_auth.Unauthorized as exc:
            return _outcome(401, Issue("login", str(exc)), headers={"WWW-Authenticate": exc.challenge})
        return await handle(principal)

    return await _answer(check)


def _owned(view: dict[str, Any] | None, principal: Principal) -> dict[str, Any] | None:
    """The job view when the principal may see it: a SMART client sees only its own jobs."""
    return view if view is not None and smart_auth.may_see(principal, view.get("labels") or {}) else None


# --- kick-off -----------------------------------------------------------------------------------


def _prepare(
    req: func.HttpRequest, deps: Deps, level: Level, group_id: str | None, principal: Principal
) -> tuple[job_api.Submitted, bulkdata.ExportPlan]:
    """Parse, consult the source, and record the job as queued (blocking: runs in a thread)."""
    lenient = bulkdata.prefers_lenient(req.headers.get("prefer"))
    pairs = bulkdata.query_pairs(req.url)
    if req.method == "POST":
        pairs += bulkdata.parameters_pairs(parse_json(req.get_body(), empty=None))
    params = bulkdata.parse_kickoff(pairs, lenient=lenient, headers=dict(req.headers))
    base_url = deps.settings.default_fhir_base_url
    if base_url is None:
        raise BulkDataError(
            500, Issue("exception", "no FHIR source is configured (EXPORT_DEFAULT_FHIR_BASE_URL)")
        )
    statement = bulkdata.read_capability(deps.http, base_url)
    searchable = smart_auth.exportable_types(
        principal,
        bulkdata.searchable_types(statement),
        types=params.types,
        filtered=[f.partition("?")[0] for f in params.type_filters],
    )
    members = None
    if level == "group" and group_id is not None:
        members = bulkdata.group_members(bulkdata.read_group(deps.http, base_url, group_id), group_id)
    elements_types = bulkdata.elements_searchable(statement, searchable)
    plan = bulkdata.plan_export(
        params,
        level=level,
        searchable=searchable,
        members=members,
        elements_types=elements_types,
        lenient=lenient,
    )
    job_id = uuid.uuid4().hex
    _store_work(deps, job_id, plan)
    body = bulkdata.export_body(
        plan,
        params,
        base_url=base_url,
        container=deps.settings.default_container,
        job_id=job_id,
        requested_by=bulkdata.requester(dict(req.headers), deps.settings.admin_email),
        labels={
            **bulkdata.kickoff_labels(_public_url(req), level, group_id, errors=len(plan.ignored)),
            **smart_auth.job_labels(principal),
        },
    )
    return job_api.submit(body, deps, job_id=job_id, origin=job_api.ORIGIN_FRONTDOOR), plan


def _store_work(deps: Deps, job_id: str, plan: bulkdata.ExportPlan) -> None:
    """Before the job exists: its patient list goes to the work store (read by every page,
    never through history), and what lenient handling ignored to the error file beside the
    output files, which the manifest's `error` lists and the file route serves."""
    if plan.patients is not None:
        work_store(deps.settings.web_jobs_storage).put_patients(job_id, plan.patients)
    errors = bulkdata.error_file(plan)
    if errors is not None:
        client = container_client(deps.settings.export_storage_connection, deps.settings.default_container)
        with storage_errors("write", f"{job_id}/{bulkdata.ERROR_FILE}"):
            with contextlib.suppress(ResourceExistsError):  # the first export into the container
                client.create_container()
            client.upload_blob(f"{job_id}/{bulkdata.ERROR_FILE}", errors, overwrite=True)


async def _kickoff(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    level: Level,
    group_id: str | None,
    principal: Principal,
) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        deps = get_deps()
        submitted, plan = await asyncio.to_thread(_prepare, req, deps, level, group_id, principal)
        job_id = submitted.job.job_id
        try:
            await durable.start(client, submitted, deps)  # the same start as the job API's
        except durable.StartFailed:
            return _outcome(
                503,
                Issue("transient", "the export could not be started; try again"),
                headers={"Retry-After": "10"},
            )
        log.info(
            "bulk export %s (%s) accepted for %s: %s",
            job_id,
            level,
            submitted.record["requested_by"],
            ",".join(plan.types),
        )
        body = bulkdata.operation_outcome(  # and what lenient handling ignored (the error file's)
            Issue("informational", f"export {job_id} accepted", severity="information"), *plan.ignored
        )
        headers = {"Content-Location": f"{_base(req)}/$export-status/{job_id}"}
        return func.HttpResponse(json.dumps(body), status_code=202, mimetype=FHIR_JSON, headers=headers)

    return await _answer(run)


@bp.route(route="fhir/$export", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def fhir_export_system(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _authorized(req, lambda who: _kickoff(req, client, "system", None, who))


@bp.route(route="fhir/Patient/$export", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def fhir_export_patient(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _authorized(req, lambda who: _kickoff(req, client, "patient", None, who))


@bp.route(route="fhir/Group/{group_id}/$export", methods=["GET", "POST"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def fhir_export_group(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    group_id = req.route_params["group_id"]
    return await _authorized(req, lambda who: _kickoff(req, client, "group", group_id, who))


# --- status, cancel, download -------------------------------------------------------------------


def _view(job_id: str, deps: Deps) -> dict[str, Any] | None:
    return job_api.show(job_id, deps) if _JOB_ID.match(job_id) else None


@bp.route(route="fhir/$export-status/{id}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def fhir_export_status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _authorized(req, lambda who: _status(req, client, who))


async def _status(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, principal: Principal
) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id = req.route_params["id"]
        found = await durable.reconciled_view(client, job_id, get_deps())  # a dead job ends here
        view = _owned(job_api.present(found) if found else None, principal)
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


def _forget(job_id: str, deps: Deps) -> dict[str, Any] | None:
    """The front-door job to delete, or None when there is none (unknown, or deleted already).

    An ended job is only marked deleted: its status and files answer 404 from then on
    (`bulkdata.is_frontdoor_job`); a live one is cancelled by the caller."""
    view = _view(job_id, deps)
    if not bulkdata.is_frontdoor_job(view):
        return None
    assert view is not None
    if view["state"] in ("succeeded", "failed"):
        deps.jobs.request_cancel(job_id)
    return view


@bp.route(route="fhir/$export-status/{id}", methods=["DELETE"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def fhir_export_delete(
    req: func.HttpRequest, client: df.DurableOrchestrationClient
) -> func.HttpResponse:
    return await _authorized(req, lambda who: _delete_export(req, client, who))


async def _delete_export(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, principal: Principal
) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id = req.route_params["id"]
        deps = get_deps()
        if principal.by_token and _owned(await asyncio.to_thread(_view, job_id, deps), principal) is None:
            return _not_found(job_id)  # another client's job (auth check: one more read, DELETE only)
        view = await asyncio.to_thread(_forget, job_id, deps)
        if view is None:
            return _not_found(job_id)
        if view["state"] not in ("succeeded", "failed"):
            await durable.cancel(client, job_id, deps)  # the same cancel as the job API's
        log.info("bulk export %s deleted by the client (was %s)", job_id, view["state"])
        body = bulkdata.operation_outcome(
            Issue("informational", f"export {job_id} deleted", severity="information")
        )
        return func.HttpResponse(json.dumps(body), status_code=202, mimetype=FHIR_JSON)

    return await _answer(run)


def _read_file(job_id: str, name: str, deps: Deps, principal: Principal) -> bytes | None:
    where = bulkdata.export_file(_owned(_view(job_id, deps), principal), name)
    if where is None:
        return None
    if name != bulkdata.ERROR_FILE and not principal.allows(name.partition("-")[0]):  # `Type-1.ndjson`
        raise BulkDataError(403, Issue("forbidden", f"the access token's scopes do not cover {name}"))
    container, blob = where
    client = container_client(deps.settings.export_storage_connection, container)
    with storage_errors("download", f"{job_id}/{name}"):
        try:
            # Whole file in memory: func.HttpResponse has no streaming body (files are <= 64 MiB
            # by default, options.max_file_bytes).
            return bytes(client.download_blob(blob).readall())
        except ResourceNotFoundError:
            return None


@bp.route(route="fhir/$export-file/{id}/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def fhir_export_file(req: func.HttpRequest) -> func.HttpResponse:
    return await _authorized(req, lambda who: _file(req, who))


async def _file(req: func.HttpRequest, principal: Principal) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, name = req.route_params["id"], req.route_params["name"]
        data = await asyncio.to_thread(_read_file, job_id, name, get_deps(), principal)
        if data is None:
            return _outcome(404, Issue("not-found", f"no file {name!r} in bulk export {job_id!r}"))
        return func.HttpResponse(data, status_code=200, mimetype=NDJSON)

    return await _answer(run)


# --- capability ------------------------------------------------------------------------------------


@bp.route(route="fhir/metadata", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def fhir_metadata(req: func.HttpRequest) -> func.HttpResponse:
    """The front door's CapabilityStatement: anonymous, as clients read it before they have a
    token (it names the token endpoint); it reads nothing and reveals no job."""
    body = capability.capability_statement(_base(req))
    return func.HttpResponse(json.dumps(body), status_code=200, mimetype=FHIR_JSON)
