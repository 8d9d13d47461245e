"""Conversions between the wire and `azure.functions` HTTP types, as the host and worker do them.

Request side (functions-host-facts.md §1.2): header names lower-cased and repeated values joined
with ","; header bytes that are not UTF-8 become U+FFFD (the worker only ever gets valid
strings, and an app encoding a lone surrogate would fail with a 500); query values joined with
"," and parameters whose value is empty dropped; the body always bytes. Response side (§1.3):
`func.HttpResponse` gets a content-type from its mimetype and charset when none is set; a
plain `str` is 200 text unless it is a JSON object with a "body" key (then it is a response
object); no output is 204. Pure: no aiohttp here.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import azure.functions as func

__all__ = [
    "ResponseParts",
    "UnsupportedResponseError",
    "build_http_request",
    "fold_headers",
    "fold_query",
    "readable",
    "to_response_parts",
]

# The server computes these itself; copying a user's value would corrupt the framing.
_FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "connection"})


class UnsupportedResponseError(TypeError):
    """An HTTP function returned something the worker cannot encode (not HttpResponse/str/None)."""


@dataclass(frozen=True)
class ResponseParts:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""


def readable(value: str) -> str:
    """`value` with the undecodable bytes aiohttp kept as lone surrogates replaced by U+FFFD."""
    try:
        raw = value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that did not come from surrogateescape
        return value.encode("utf-8", "replace").decode("utf-8")
    return raw.decode("utf-8", "replace")


def fold_headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Lower-case names; repeated headers joined with "," in arrival order; values made readable."""
    out: dict[str, str] = {}
    for name, raw_value in pairs:
        key, value = name.lower(), readable(raw_value)
        out[key] = f"{out[key]},{value}" if key in out else value
    return out


def fold_query(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Repeated parameters joined with ","; a parameter whose joined value is empty is dropped."""
    grouped: dict[str, list[str]] = {}
    for name, value in pairs:
        grouped.setdefault(name, []).append(value)
    joined = {name: ",".join(values) for name, values in grouped.items()}
    return {name: value for name, value in joined.items() if value != ""}


def build_http_request(
    *,
    method: str,
    url: str,
    headers: Iterable[tuple[str, str]],
    query: Iterable[tuple[str, str]],
    route_params: Mapping[str, str],
    body: bytes,
) -> func.HttpRequest:
    return func.HttpRequest(
        method.upper(),
        url,
        headers=fold_headers(headers),
        params=fold_query(query),
        route_params=dict(route_params),
        body=body,
    )


def to_response_parts(value: Any) -> ResponseParts:
    """What the client receives for an HTTP function's output value."""
    if value is None:
        return ResponseParts(204)
    if isinstance(value, func.HttpResponse):
        return _from_http_response(value)
    if isinstance(value, str):
        return _from_str(value)
    raise UnsupportedResponseError(
        f"an HTTP function must return func.HttpResponse, str or None, not {type(value).__name__}"
    )


def _from_http_response(resp: func.HttpResponse) -> ResponseParts:
    # `headers` is a werkzeug Headers: items() keeps repeated names (e.g. several Set-Cookie).
    headers = [(k, str(v)) for k, v in resp.headers.items() if k.lower() not in _FRAMING_HEADERS]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype, charset = resp.mimetype, resp.charset
        headers.append(
            ("Content-Type", f"{mimetype}; charset={charset}" if mimetype.startswith("text/") else mimetype)
        )
    return ResponseParts(int(resp.status_code), headers, resp.get_body() or b"")


def _from_str(text: str) -> ResponseParts:
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if isinstance(parsed, dict) and "body" in parsed:
        return _from_response_object(parsed)
    return ResponseParts(200, [("Content-Type", "text/plain; charset=utf-8")], text.encode("utf-8"))


def _from_response_object(obj: Mapping[str, Any]) -> ResponseParts:
    """The host's JSON response-object form: {"statusCode"|"status", "headers", "body"}."""
    raw_status = obj.get("statusCode", obj.get("status", 200))
    try:
        status = int(raw_status)
    except (TypeError, ValueError) as exc:
        raise UnsupportedResponseError(f"response object has a bad status {raw_status!r}") from exc
    raw_headers = obj.get("headers") or {}
    if not isinstance(raw_headers, Mapping):
        raise UnsupportedResponseError("response object 'headers' must be an object")
    headers = [(str(k), str(v)) for k, v in raw_headers.items() if str(k).lower() not in _FRAMING_HEADERS]
    body = obj["body"]
    has_type = any(k.lower() == "content-type" for k, _ in headers)
    if isinstance(body, str):
        data = body.encode("utf-8")
        default_type = "text/plain; charset=utf-8"
    elif body is None:
        data, default_type = b"", ""
    else:
        data = json.dumps(body).encode("utf-8")
        default_type = "application/json; charset=utf-8"
    if default_type and not has_type:
        headers.append(("Content-Type", default_type))
    return ResponseParts(status, headers, data)
