"""`GET /api/openapi.json`: the OpenAPI 3.1 document of the HTTP API (`shared.openapi_spec`).

Anonymous: the document describes the routes and their schemas and holds no secret and no
setting's value. Its server URL is `<public base>/api`, the base every absolute URL of the
service has (`http_api.callers.public_base`: PUBLIC_BASE_URL, never the `Host` header), so a
client or a fuzzer calls the instance it read the document from.
"""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from http_api.callers import public_base
from shared import openapi_spec

bp = df.Blueprint()


def server_url(req: func.HttpRequest) -> str:
    """`http://127.0.0.1:7071/api` (or `/api` when there is no public base)."""
    return f"{public_base(req)}/api"


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def openapi_document(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(openapi_spec.document(server_url(req))),
        status_code=200,
        mimetype="application/json",
        headers={"Cache-Control": "no-cache"},
    )
