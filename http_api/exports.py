"""The export job API: POST/GET /api/exports, GET/DELETE /api/exports/{id}, POST .../retry.

Thin adapters over `shared.job_api` and `control.durable` (the flows that need the durable
client): decode the request, call one function, encode the answer. Also what every kind's API
shares: the error answers (`guarded`), a new job's start (`accept`) and a retry (`durable_retry`).
Errors are JSON `{"error": {"code", "message", "field"?}}`; never a stack trace or a secret.
Blocking work (job records, secrets) runs in a worker thread, off the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from control import durable
from http_api.callers import RateLimited, caller_of, public_base
from shared import job_api
from shared.admitting import TooManyJobs
from shared.callers import Caller, Forbidden, Unauthenticated
from shared.deps import get_deps
from shared.errors import PermanentError, TransientError, ValidationError
from shared.jobstore import JobKind
from shared.request_body import PayloadTooLarge, parse_json
from shared.request_metrics import measured

bp = df.Blueprint()
log = logging.getLogger(__name__)


def json_answer(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def error(
    status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None
) -> func.HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return json_answer({"error": body}, status, headers)


@measured  # request counts and latencies for GET /api/metrics
async def guarded(call: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Map domain errors to clear HTTP answers (400 names the field; 503 for a passing outage)."""
    try:
        return await call()
    except PayloadTooLarge as exc:
        return error(413, "too_large", str(exc), exc.field)
    except ValidationError as exc:
        return error(400, "invalid_request", str(exc), exc.field)
    except Unauthenticated as exc:
        return error(401, "unauthenticated", str(exc), None, {"WWW-Authenticate": "Bearer"})
    except Forbidden as exc:
        return error(403, "forbidden", str(exc), exc.field)
    except RateLimited as exc:
        return error(429, "too_many_requests", str(exc), None, {"Retry-After": exc.retry_after})
    except TooManyJobs as exc:
        return error(429, "too_many_jobs", str(exc), None, {"Retry-After": exc.retry_after})
    except job_api.JobConflict as exc:
        return error(409, "conflict", str(exc), exc.field)
    except TransientError as exc:
        log.warning("export API: dependency unavailable: %s", exc)
        return error(503, "unavailable", "a dependency is temporarily unavailable; try again", None)
    except PermanentError as exc:
        log.error("export API: %s", exc)
        return error(500, "internal", "the request could not be processed", None)


async def accept(
    req: func.HttpRequest,
    client: df.DurableOrchestrationClient,
    submit: Callable[..., job_api.Submitted],
    status_path: str,
) -> func.HttpResponse:
    """POST of a new job of any kind: decode, `submit` (records it queued), start it, 202."""
    deps = get_deps()
    caller = caller_of(req, deps)
    body = parse_json(req.get_body())
    submitted = await asyncio.to_thread(submit, body, deps, caller=caller)
    job_id = submitted.job.job_id
    try:
        await durable.start(client, submitted, deps)
    except durable.StartFailed:
        return error(503, "unavailable", "the job could not be started; try again")
    location = f"{public_base(req, deps)}/api/{status_path}/{job_id}"
    log.info("%s %s accepted for %s", status_path, job_id, submitted.record["requested_by"])
    body = {"id": job_id, "state": "queued", "status_url": location}
    return json_answer(body, 202, {"Location": location, "Retry-After": "5"})


async def durable_retry(
    req: func.HttpRequest, client: df.DurableOrchestrationClient, job_id: str, caller: Caller | None = None
) -> func.HttpResponse:
    """POST .../retry for any kind: re-queue through `job_api.retry`, start, answer the status."""
    deps = get_deps()
    caller = caller or caller_of(req, deps)
    body = parse_json(req.get_body(), empty=None)
    submitted = await asyncio.to_thread(job_api.retry, job_id, body, deps, caller)
    if submitted is None:
        return error(404, "not_found", f"no job {job_id!r}", "id")
    try:
        await durable.start(client, submitted, deps)
    except durable.StartFailed:
        return error(503, "unavailable", "the retry could not be started; try again")
    view = await asyncio.to_thread(job_api.find, job_id, deps, caller)
    assert view is not None
    return json_answer(job_api.present(view), 202)


@bp.route(route="exports", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await guarded(lambda: accept(req, client, job_api.submit, "exports"))


@bp.route(route="exports", methods=["GET"])
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        params, deps = dict(req.params), get_deps()
        caller = caller_of(req, deps)
        listed = await asyncio.to_thread(job_api.list_jobs, params, deps, kind="fhir-export", caller=caller)
        return json_answer(listed)

    return await guarded(run)


@bp.route(route="exports/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        view = await durable.reconciled_view(client, job_id, deps, caller_of(req, deps))
        if view is None:
            return error(404, "not_found", f"no export job {job_id!r}", "id")
        return json_answer(job_api.present(view))

    return await guarded(run)


@bp.route(route="exports/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def cancel_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        view = await durable.cancel(client, job_id, deps, caller_of(req, deps))
        if view is None:
            return error(404, "not_found", f"no export job {job_id!r}", "id")
        return json_answer(job_api.present(view), 202)

    return await guarded(run)


@bp.route(route="exports/{id}/retry", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def retry_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        caller = caller_of(req, deps)
        view = await asyncio.to_thread(job_api.find, job_id, deps, caller)
        kind = view.record.get("kind") or JobKind.FHIR_EXPORT.value if view is not None else None
        if kind != JobKind.FHIR_EXPORT.value:  # records older than kinds are exports
            return error(404, "not_found", f"no export job {job_id!r}", "id")
        return await durable_retry(req, client, job_id, caller)

    return await guarded(run)
