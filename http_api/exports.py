"""The export job API: POST/GET /api/exports, GET/DELETE /api/exports/{id}.

Thin adapters over `shared.job_api`: decode the request, call one function, encode the answer.
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

from shared import job_api
from shared.deps import get_deps
from shared.errors import PermanentError, TransientError, ValidationError
from shared.export_tasks import CANCEL_EVENT, JOB_ORCHESTRATOR

bp = df.Blueprint()
log = logging.getLogger(__name__)


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def error(status: int, code: str, message: str, field: str | None = None) -> func.HttpResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if field:
        body["field"] = field
    return _json({"error": body}, status)


async def guarded(call: Callable[[], Awaitable[func.HttpResponse]]) -> func.HttpResponse:
    """Map domain errors to clear HTTP answers (400 names the field; 503 for a passing outage)."""
    try:
        return await call()
    except ValidationError as exc:
        return error(400, "invalid_request", str(exc), exc.field)
    except TransientError as exc:
        log.warning("export API: dependency unavailable: %s", exc)
        return error(503, "unavailable", "a dependency is temporarily unavailable; try again", None)
    except PermanentError as exc:
        log.error("export API: %s", exc)
        return error(500, "internal", "the request could not be processed", None)


def status_url(req: func.HttpRequest, job_id: str) -> str:
    base = req.url.split("/api/", 1)[0]
    return f"{base}/api/exports/{job_id}"


@bp.route(route="exports", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        try:
            body = req.get_json()
        except ValueError:
            return error(400, "invalid_json", "the body must be a JSON object", "body")
        deps = get_deps()
        submitted = await asyncio.to_thread(job_api.submit, body, deps)
        try:
            await client.start_new(JOB_ORCHESTRATOR, submitted.job.job_id, submitted.job.to_dict())
        except Exception:
            log.exception("export %s: could not start the orchestration", submitted.job.job_id)
            await asyncio.to_thread(job_api.abandon, submitted, deps, "the export could not be started")
            return error(503, "unavailable", "the export could not be started; try again")
        location = status_url(req, submitted.job.job_id)
        log.info("export %s accepted for %s", submitted.job.job_id, submitted.job.request.requested_by)
        body = {"id": submitted.job.job_id, "state": "queued", "status_url": location}
        return _json(body, 202, {"Location": location, "Retry-After": "5"})

    return await guarded(run)


@bp.route(route="exports", methods=["GET"])
async def list_exports(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        return _json(await asyncio.to_thread(job_api.list_jobs, dict(req.params), get_deps()))

    return await guarded(run)


@bp.route(route="exports/{id}", methods=["GET"])
async def get_export(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        view = await asyncio.to_thread(job_api.show, req.route_params["id"], get_deps())
        if view is None:
            return error(404, "not_found", f"no export job {req.route_params['id']!r}", "id")
        return _json(view)

    return await guarded(run)


@bp.route(route="exports/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def cancel_export(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id = req.route_params["id"]
        view = await asyncio.to_thread(job_api.request_cancel, job_id, get_deps())
        if view is None:
            return error(404, "not_found", f"no export job {job_id!r}", "id")
        if view["cancel_requested"]:
            try:
                await client.raise_event(job_id, CANCEL_EVENT, None)
            except Exception:  # noqa: BLE001 - the marker alone stops the work at the next page
                log.warning("export %s: cancel event not delivered; the cancel marker stands", job_id)
        return _json(view, 202)

    return await guarded(run)
