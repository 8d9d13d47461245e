"""What a user checks of auto-export (seed 000): per session and per study.

    GET /api/sessions/{session_id}   every app's export of the session: one word (queued,
                                     in progress, retrying, complete, failed, cancelled) and
                                     each item's outcome (`skipped` names the rule)
    GET /api/studies/{study_id}      every session of the study with its word, and one for the study

Thin adapters over `shared.session_api`: each session job is reconciled first (like any
job's status read), so a session whose orchestration died shows its real end.
"""

from __future__ import annotations

import asyncio
import re

import azure.durable_functions as df
import azure.functions as func

from control import durable
from http_api.callers import caller_of
from http_api.exports import error, guarded, json_answer
from shared import session_api
from shared.deps import get_deps

bp = df.Blueprint()

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")  # as the session-completed message's ids


@bp.route(route="sessions/{id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
async def get_session(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        session_id = req.route_params["id"]
        if not _ID.match(session_id):
            return error(400, "invalid", "a session id is 1-128 letters, digits, '.', '_' or '-'", "id")
        deps = get_deps()
        caller_of(req, deps)  # an identity when one is required, within its rate; sessions are everyone's
        status = await asyncio.to_thread(session_api.session_status, session_id, deps)
        if status is None:
            return error(404, "not_found", f"no export of session {session_id!r}", "id")
        settled = False
        for app in status["apps"]:
            if app["state"] in ("queued", "running", "retrying"):
                view = await asyncio.to_thread(deps.jobs.view, app["job_id"])
                settled = view is not None and await durable.reconcile(client, view, deps) or settled
        if settled:
            status = await asyncio.to_thread(session_api.session_status, session_id, deps)
        return json_answer(status)

    return await guarded(run)


@bp.route(route="studies/{id}", methods=["GET"])
async def get_study(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        study_id = req.route_params["id"]
        if not _ID.match(study_id):
            return error(400, "invalid", "a study id is 1-128 letters, digits, '.', '_' or '-'", "id")
        deps = get_deps()
        caller_of(req, deps)
        status = await asyncio.to_thread(session_api.study_status, study_id, deps)
        if status is None:
            return error(404, "not_found", f"no export of study {study_id!r}", "id")
        return json_answer(status)

    return await guarded(run)
