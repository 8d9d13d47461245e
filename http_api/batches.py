"""The batch API: POST /api/batches, GET/DELETE /api/batches/{id}, POST /api/batches/{id}/retry.

    POST   /api/batches                   202 + Location; 400 naming the field (e.g. `items[3]`)
    GET    /api/batches/{id}?items_offset=N   the batch, its counts and (up to 1,000) items
    DELETE /api/batches/{id}              cancel: in-flight items stop, nothing half-written stays
    POST   /api/batches/{id}/retry        re-run only the items that did not succeed

Thin adapters over `shared.batch_api`, `shared.job_api` and `control.durable`: the same start,
cancel, reconcile and retry as every other job (GET /api/jobs lists batches too).
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from control import durable
from http_api.callers import caller_of
from http_api.exports import accept, durable_retry, error, guarded, json_answer
from shared import batch_api, job_api
from shared.callers import Caller
from shared.deps import Deps, get_deps
from shared.errors import ValidationError
from shared.jobstore import JobKind, JobView

bp = df.Blueprint()


@bp.route(route="batches", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def submit_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await guarded(lambda: accept(req, client, batch_api.submit, "batches"))


def _batch(job_id: str, deps: Deps, caller: Caller) -> JobView | None:
    """The batch `job_id`, or None (no such job the caller may see, or a job of another kind)."""
    view = job_api.find(job_id, deps, caller)
    return view if view is not None and view.record.get("kind") == JobKind.BATCH.value else None


def _not_found(job_id: str) -> func.HttpResponse:
    return error(404, "not_found", f"no batch {job_id!r}", "id")


def _offset(req: func.HttpRequest) -> int:
    text = req.params.get("items_offset", "0")
    if not text.isdigit() or int(text) > 1_000_000:
        raise ValidationError("items_offset", "must be a whole number")
    return int(text)


@bp.route(route="batches/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, offset, deps = req.route_params["id"], _offset(req), get_deps()
        caller = caller_of(req, deps)
        if await asyncio.to_thread(_batch, job_id, deps, caller) is None:
            return _not_found(job_id)
        view = await durable.reconciled_view(client, job_id, deps, caller)
        assert view is not None
        return json_answer(batch_api.present(view, offset=offset))

    return await guarded(run)


@bp.route(route="batches/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def cancel_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        caller = caller_of(req, deps)
        if await asyncio.to_thread(_batch, job_id, deps, caller) is None:
            return _not_found(job_id)
        view = await durable.cancel(client, job_id, deps, caller)
        assert view is not None
        return json_answer(batch_api.present(view), 202)

    return await guarded(run)


@bp.route(route="batches/{id}/retry", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def retry_batch(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        caller = caller_of(req, deps)
        if await asyncio.to_thread(_batch, job_id, deps, caller) is None:
            return _not_found(job_id)
        return await durable_retry(req, client, job_id, caller)

    return await guarded(run)
