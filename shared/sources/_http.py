"""Turn HTTP outcomes of a FHIR server into the domain's error tree (pure functions, no I/O).

    429; 503 with Retry-After     -> RetryAfterError (Retry-After in seconds or an HTTP-date)
    408, other 5xx except 501     -> TransientError
    501, 3xx, other 4xx           -> PermanentError, with the OperationOutcome's text
    timeouts, connection errors   -> TransientError (see `classify_transport_error`)

Messages name the URL with credentials removed and never contain the bearer token.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx

from shared import retry
from shared.errors import ExportError, PermanentError, RetryAfterError, TransientError

__all__ = [
    "DEFAULT_RETRY_AFTER_S",
    "classify_status",
    "classify_transport_error",
    "outcome_text",
    "parse_retry_after",
    "redact_url",
]

# When a 429/503 carries no usable Retry-After: long enough not to hammer a throttling server,
# short enough that a blip does not stall an export for minutes.
DEFAULT_RETRY_AFTER_S = 10.0
# Query parameters whose values are credentials in common schemes (SAS, OAuth, API keys).
_SECRET_PARAMS = frozenset(
    {"access_token", "token", "sig", "signature", "code", "key", "api_key", "password", "secret"}
)
_MAX_DETAIL_CHARS = 500


def redact_url(url: str) -> str:
    """The URL without user-info and with credential-like query values replaced by `REDACTED`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc.rpartition("@")[2]
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name.lower() in _SECRET_PARAMS for name, _ in pairs):
            query = urlencode(
                [(name, "REDACTED" if name.lower() in _SECRET_PARAMS else value) for name, value in pairs]
            )
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def parse_retry_after(
    value: str | None, now: Callable[[], datetime], default: float = DEFAULT_RETRY_AFTER_S
) -> float:
    """Seconds to wait from a `Retry-After` header (`shared.retry.parse_retry_after`), or
    `default` when it is absent or not valid RFC 9110 (a negative delay is not)."""
    seconds = retry.parse_retry_after(value, now())
    return default if seconds is None else seconds


def outcome_text(body: bytes) -> str:
    """The human text of an OperationOutcome body (`diagnostics`, `details.text`), else ''."""
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return ""
    if not isinstance(document, dict) or document.get("resourceType") != "OperationOutcome":
        return ""
    texts: list[str] = []
    for issue in document.get("issue") or []:
        if not isinstance(issue, dict):
            continue
        for text in (issue.get("diagnostics"), (issue.get("details") or {}).get("text")):
            if isinstance(text, str) and text.strip() and text.strip() not in texts:
                texts.append(text.strip())
    return "; ".join(texts)[:_MAX_DETAIL_CHARS]


def _scrub(message: str, secret: str | None) -> str:
    # Belt and braces: a server that echoes request headers into its error body must not make
    # the token reach logs or durable history through our message.
    return message.replace(secret, "***") if secret else message


def classify_status(
    response: httpx.Response,
    body: bytes,
    what: str,
    *,
    now: Callable[[], datetime],
    default_retry_after_s: float = DEFAULT_RETRY_AFTER_S,
    secret: str | None = None,
) -> ExportError:
    """The error for a non-2xx `response`; `what` names the request, e.g. 'Patient page <url>'."""
    status = response.status_code
    detail = outcome_text(body)
    message = f"{what}: HTTP {status} {response.reason_phrase}".rstrip()
    if detail:
        message = f"{message}: {detail}"
    message = _scrub(message, secret)
    retry_after = response.headers.get("Retry-After")
    # 429 is throttling: wait as told, or a default. 503 waits only when the server says how long;
    # without Retry-After it is an ordinary transient fault for the job's retry policy.
    if status == 429 or (status == 503 and retry_after):
        delay = parse_retry_after(retry_after, now, default_retry_after_s)
        return RetryAfterError(message, delay)
    # 501 Not Implemented says the server lacks a feature (a search parameter, say): no retry fixes it.
    if status == 408 or (status >= 500 and status != 501):
        return TransientError(message)
    return PermanentError(message)


def classify_transport_error(exc: httpx.RequestError, what: str) -> ExportError:
    """Network-level failures are worth retrying, except a URL scheme the client cannot speak."""
    if isinstance(exc, httpx.UnsupportedProtocol):
        return PermanentError(f"{what}: {type(exc).__name__}")
    kind = "timed out" if isinstance(exc, httpx.TimeoutException) else "connection failed"
    # The exception text can contain the URL but never request headers; keep only the class name
    # and our own (redacted) description.
    return TransientError(f"{what}: {kind} ({type(exc).__name__})")
