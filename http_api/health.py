"""`GET /api/health`: anonymous checks of settings, storage, durable runtime, secret store and SMTP.

Anonymous on purpose (load balancers and uptime checks hold no function key), so the body says
only "ok", "not configured" or a short error per check: a classification, or which setting is
invalid, never a setting's value or an exception text. 503 only when a critical check fails
(settings, storage, durable runtime); a secret store or mail server outage is "degraded" with 200
(see `shared.health`).
"""

from __future__ import annotations

import json
import os

import azure.durable_functions as df
import azure.functions as func

from shared.health import HealthReport, check_health, status_probe

bp = df.Blueprint()


def answer(report: HealthReport) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(report.to_json()),
        status_code=report.http_status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@bp.durable_client_input(client_name="client")
async def health(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """200 unless a critical dependency fails (then 503); every check's state in the body."""
    return answer(await check_health(os.environ, durable=lambda: status_probe(client)))
