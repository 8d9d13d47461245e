"""The edge's view of a request: who calls (`shared.callers`), within their rate, and the public
base of the absolute URLs we answer with.

Absolute URLs (`Location`, `status_url`, the FHIR front door's `Content-Location`, manifest and
token URLs) come from PUBLIC_BASE_URL, never from the request's `Host` header, which any client
sets at will. Without the setting (a developer's machine) the request's own origin is used only
when it names a loopback address; otherwise the URL is given relative to the host.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import azure.functions as func

from shared.callers import Caller, caller_from_headers
from shared.deps import Deps, get_deps
from shared.errors import PermanentError
from shared.outbound import LOOPBACK_HOSTS
from shared.rate_limit import RateLimiter

__all__ = ["RateLimited", "caller_of", "public_base"]

_limiters: dict[int, RateLimiter] = {}  # per configured rate: tests and reloads change it


class RateLimited(PermanentError):
    """Over the caller's request rate: 429 with Retry-After."""

    def __init__(self, retry_after: str) -> None:
        super().__init__(f"too many requests; try again in {retry_after} s")
        self.retry_after = retry_after


def caller_of(req: func.HttpRequest, deps: Deps | None = None) -> Caller:
    """The caller, counted against its rate (RateLimited over it; Unauthenticated without an
    identity when one is required)."""
    settings = (deps or get_deps()).settings
    caller = caller_from_headers(
        dict(req.headers),
        principal_trusted=settings.principal_trusted,
        require_identity=settings.require_identity,
        operators=settings.operators,
        query_key=req.params.get("code"),
    )
    limiter = _limiters.setdefault(
        settings.rate_limit_per_minute, RateLimiter(settings.rate_limit_per_minute)
    )
    wait = limiter.admit(caller.bucket)
    if wait is not None:
        raise RateLimited(limiter.retry_after_header(wait))
    return caller


def public_base(req: func.HttpRequest, deps: Deps | None = None) -> str:
    """`https://host` (no trailing slash) for absolute URLs, or "" for host-relative ones."""
    configured = (deps or get_deps()).settings.public_base_url
    if configured:
        return configured.rstrip("/")
    try:
        parts = urlsplit(str(req.url))
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if host not in LOOPBACK_HOSTS or parts.scheme not in ("http", "https"):
        return ""
    name = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{name}" + (f":{port}" if port else "")
