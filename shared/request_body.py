"""Request bodies decoded defensively: the one way HTTP routes turn bytes into JSON.

A hostile body must get a 4xx naming the problem, never a 5xx: so the bytes are checked before
they are decoded (size, strict UTF-8), the nesting depth is counted before the parser recurses
(CPython's decoder raises RecursionError, a 500, on a few thousand `[`), and the decoded value is
walked once for what JSON allows but nothing downstream can store or compare: lone surrogates
(`"\\ud800"` is valid JSON but not encodable text), NaN and Infinity, numbers beyond 64 bits,
duplicate keys. Framework-free; `ValidationError`s name the field (a JSON path such as
`items[3].name` where the problem is inside the value).
"""

from __future__ import annotations

import json
import math
from typing import Any, Final

from shared.errors import ValidationError

__all__ = ["MAX_BODY_BYTES", "MAX_DEPTH", "PayloadTooLarge", "parse_json"]

# The largest body any route takes: a batch of 10,000 items with long URLs fits with room to spare.
MAX_BODY_BYTES: Final = 4 * 1024 * 1024
MAX_DEPTH: Final = 32  # our deepest contract nests 5 levels; 32 leaves room for FHIR Parameters
_MAX_INT: Final = 2**63 - 1


class PayloadTooLarge(ValidationError):
    """The body is bigger than the route accepts (413)."""


def parse_json(raw: bytes | None, *, max_bytes: int = MAX_BODY_BYTES, empty: Any = ...) -> Any:
    """The JSON value of a request body. `empty` is returned for an empty body when given;
    otherwise an empty body is an error."""
    data = raw or b""
    if len(data) > max_bytes:
        raise PayloadTooLarge("body", f"must be at most {max_bytes} bytes")
    if not data.strip():
        if empty is not ...:
            return empty
        raise ValidationError("body", "must be a JSON object")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValidationError("body", f"is not UTF-8 (byte {exc.start})") from None
    _check_depth(text)
    try:
        value = json.loads(text, parse_constant=_no_constant, object_pairs_hook=_no_duplicates)
    except _Refused as exc:
        raise ValidationError("body", str(exc)) from None
    except ValueError as exc:  # json.JSONDecodeError, and ints longer than Python converts
        raise ValidationError("body", f"is not valid JSON ({_reason(exc)})") from None
    _check_value(value, "")
    return value


class _Refused(ValueError):
    pass


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Refused(f"the key {key!r} appears twice in one object")
        out[key] = value
    return out


def _reason(exc: ValueError) -> str:
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at line {exc.lineno} column {exc.colno}"
    return "a number is too long"


def _check_depth(text: str) -> None:
    """Count nesting outside strings, linearly, before the recursive parser sees it."""
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise ValidationError("body", f"nests deeper than {MAX_DEPTH} levels")
        elif char in "]}":
            depth -= 1


def _check_value(value: Any, path: str) -> None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValidationError(path or "body", "is not valid Unicode text (a lone surrogate)") from None
    elif isinstance(value, bool) or value is None:
        return
    elif isinstance(value, int):
        if abs(value) > _MAX_INT:
            raise ValidationError(path or "body", "is a number too large")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ValidationError(path or "body", "is a number too large")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_value(item, f"{path}[{i}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_value(key, path or "body")
            _check_value(item, f"{path}.{key}" if path else str(key))
