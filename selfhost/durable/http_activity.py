"""The built-in activity behind `context.call_http` (BuiltIn::HttpActivity).

Performs the request as the extension does, including its asynchronous-pattern polling: while
the answer is 202 with a Location header, wait Retry-After (or the extension's default 30 s)
and GET the Location. The result is the JSON the SDK parses as a DurableHttpResponse.
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import httpx

DEFAULT_POLL_S = float(os.environ.get("SELFHOST_HTTP_POLL_SECONDS", "30"))
_client: httpx.AsyncClient | None = None


def _http() -> httpx.AsyncClient:
    global _client
    if _client is None:
        _client = httpx.AsyncClient(timeout=httpx.Timeout(90.0), follow_redirects=False)
    return _client


def _retry_after(resp: httpx.Response) -> float:
    try:
        return max(0.0, float(resp.headers.get("retry-after", DEFAULT_POLL_S)))
    except ValueError:
        return DEFAULT_POLL_S


async def run_http_activity(request_json: str) -> str:
    req: dict[str, Any] = json.loads(request_json)
    if req.get("tokenSource"):
        raise NotImplementedError("Managed identity token sources are not available outside Azure.")
    headers = {
        k: (",".join(v) if isinstance(v, list) else str(v)) for k, v in (req.get("headers") or {}).items()
    }
    content = req.get("content")
    resp = await _http().request(
        str(req.get("method", "GET")).upper(),
        str(req["uri"]),
        headers=headers,
        content=content.encode() if isinstance(content, str) else None,
    )
    while resp.status_code == 202 and "location" in resp.headers:
        await asyncio.sleep(_retry_after(resp))
        resp = await _http().get(resp.headers["location"], headers=headers)
    return json.dumps(
        {
            "statusCode": resp.status_code,
            "headers": {k: v for k, v in resp.headers.items()},
            "content": resp.text,
        }
    )
