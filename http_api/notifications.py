"""The outcome-mail outbox for operators (admin key): see what was sent, what waits, what is dead.

    GET    /api/notifications?state=pending|sending|sent|dead&limit=&continuation=
    POST   /api/notifications/{key}/retry     a dead mail is queued again (due at once)
    DELETE /api/notifications/{key}           drop a mail in any state

Thin adapters over `shared.outcome_mail`; errors are the job API's (`http_api.exports`).
"""

from __future__ import annotations

import asyncio

import azure.durable_functions as df
import azure.functions as func

from http_api.exports import error, guarded, json_answer
from shared import outcome_mail
from shared.deps import get_deps

bp = df.Blueprint()


@bp.route(route="notifications", methods=["GET"], auth_level=func.AuthLevel.ADMIN)
async def list_notifications(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        return json_answer(await asyncio.to_thread(outcome_mail.list_entries, dict(req.params), get_deps()))

    return await guarded(run)


@bp.route(route="notifications/{key}/retry", methods=["POST"], auth_level=func.AuthLevel.ADMIN)
async def retry_notification(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        key = req.route_params["key"]
        entry = await asyncio.to_thread(outcome_mail.retry_entry, key, get_deps())
        if entry is None:
            return error(404, "not_found", f"no notification {key!r}", "key")
        return json_answer(entry, 202)

    return await guarded(run)


@bp.route(route="notifications/{key}", methods=["DELETE"], auth_level=func.AuthLevel.ADMIN)
async def delete_notification(req: func.HttpRequest) -> func.HttpResponse:
    async def run() -> func.HttpResponse:
        key = req.route_params["key"]
        if not await asyncio.to_thread(outcome_mail.delete_entry, key, get_deps()):
            return error(404, "not_found", f"no notification {key!r}", "key")
        return func.HttpResponse(status_code=204)

    return await guarded(run)
