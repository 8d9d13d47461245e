"""SMART Backend Services endpoints of the FHIR front door, anonymous at the host (a Bulk Data
client holds no function key; it authenticates with a signed assertion instead):

    POST /api/fhir/auth/token                       client_credentials + private_key_jwt -> token
    GET  /api/fhir/.well-known/smart-configuration  discovery

Thin adapters over `shared.smart_auth`; the front door's routes check the tokens
(`http_api.fhir._authorized`). URLs are derived from the request as the front door's are.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import azure.functions as func

from http_api.fhir import _base as fhir_base
from shared import smart_auth
from shared.deps import get_deps

bp = func.Blueprint()  # type: ignore[no-untyped-call]  # azure-functions leaves __init__ unannotated
log = logging.getLogger(__name__)

TOKEN_ROUTE = "auth/token"  # under the FHIR base: the CapabilityStatement's oauth-uris name it too


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> func.HttpResponse:
    return func.HttpResponse(
        json.dumps(body), status_code=status, mimetype="application/json", headers=headers
    )


def token_url(req: func.HttpRequest) -> str:
    return f"{fhir_base(req)}/{TOKEN_ROUTE}"


@bp.route(route=f"fhir/{TOKEN_ROUTE}", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
async def fhir_auth_token(req: func.HttpRequest) -> func.HttpResponse:
    """The token endpoint: a form in, an access token or an RFC 6749 error out."""
    try:
        smart = get_deps().smart
        answer = await asyncio.to_thread(
            smart.token, req.get_body() or b"", req.headers.get("content-type"), token_url(req)
        )
    except Exception:  # noqa: BLE001 - a client gets an OAuth error body, never a bare 500
        log.exception("SMART token endpoint: unexpected error")
        body = {"error": "server_error", "error_description": "the service log has the details"}
        return _json(body, 500, {"Cache-Control": "no-store"})
    return _json(answer.body, answer.status, dict(answer.headers))


@bp.route(route="fhir/.well-known/smart-configuration", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def fhir_smart_configuration(req: func.HttpRequest) -> func.HttpResponse:
    """Discovery (SMART App Launch 2): where the token endpoint is and what it accepts."""
    return _json(smart_auth.smart_configuration(token_url(req)))
