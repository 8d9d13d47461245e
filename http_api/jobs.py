"""The job API over every kind: GET /api/jobs, GET/DELETE /api/jobs/{id}.

    GET    /api/jobs?kind=&state=&requested_by=&label=k=v&created_from=&created_to=&limit=&continuation=
    GET    /api/jobs/{id}        the job's status document (for an export, what /api/exports/{id} shows)
    DELETE /api/jobs/{id}        cancel, in any state that has not ended
    POST   /api/jobs/{id}/retry  queue a failed job again (an export resumes its failed types from
                                 their last commit); body: the job's secrets again, if it had any

Thin adapters over `shared.job_api` and `control.durable`, the same calls as the kind-specific
APIs (`http_api.exports`), so a job started by any entry point is listed, shown and cancelled alike.
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from control import durable
from http_api.callers import caller_of
from http_api.exports import durable_retry, error, guarded, json_answer
from shared import job_api
from shared.deps import get_deps

bp = df.Blueprint()


@bp.route(route="jobs", methods=["GET"])
async def list_jobs(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        deps = get_deps()
        caller = caller_of(req, deps)
        return json_answer(await asyncio.to_thread(job_api.list_jobs, dict(req.params), deps, caller=caller))

    return await guarded(run)


@bp.route(route="jobs/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        view = await durable.reconciled_view(client, job_id, deps, caller_of(req, deps))
        if view is None:
            return error(404, "not_found", f"no job {job_id!r}", "id")
        return json_answer(job_api.present(view))

    return await guarded(run)


@bp.route(route="jobs/{id}", methods=["DELETE"])
@bp.durable_client_input(client_name="client")
async def cancel_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        job_id, deps = req.route_params["id"], get_deps()
        view = await durable.cancel(client, job_id, deps, caller_of(req, deps))
        if view is None:
            return error(404, "not_found", f"no job {job_id!r}", "id")
        return json_answer(job_api.present(view), 202)

    return await guarded(run)


@bp.route(route="jobs/{id}/retry", methods=["POST"])
@bp.durable_client_input(client_name="client")
async def retry_job(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        return await durable_retry(req, client, req.route_params["id"])

    return await guarded(run)
