"""`GET /api/health`: anonymous liveness and storage check for probes and operators.

Anonymous on purpose (load balancers and uptime checks hold no function key), so the body says
only "ok" or a short error per check: a classification, or which setting is invalid, never a
setting's value or an exception text.
"""

from __future__ import annotations

import json
import os

import azure.functions as func

from shared.health import check_health

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """200 with every check "ok", 503 when a dependency fails (see `shared.health`)."""
    report = check_health(os.environ)
    return func.HttpResponse(
        json.dumps(report.to_json()),
        status_code=report.http_status,
        mimetype="application/json",
        headers={"Cache-Control": "no-store"},
    )
