"""ASP.NET Core inline route constraints (`{id:int}`, `{s:length(2,5)}`, ...) as pure predicates.

The Functions host resolves route constraints with ASP.NET's `IInlineConstraintResolver`
(functions-host-facts.md §1.1), so this module mirrors that table. Numbers follow .NET's
invariant-culture parsing closely enough for routing; exotic forms (thousands separators,
hex) are deliberately not accepted. It must stay free of I/O and of aiohttp.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Constraint", "ConstraintError", "make_constraint"]


class ConstraintError(ValueError):
    """An inline constraint is unknown or has bad arguments (raised when a template is parsed)."""


@dataclass(frozen=True)
class Constraint:
    """One parsed constraint: `text` is how it was written (for messages), `check` the predicate."""

    text: str
    check: Callable[[str], bool]

    def __call__(self, value: str) -> bool:
        return self.check(value)


# ASCII digits only (.NET's invariant culture); at most 30 of them, so int() stays far below
# Python's 4300-digit limit (a longer path segment would raise ValueError there: a 500).
_INT_RE = re.compile(r"\s*(?P<sign>[+-]?)0*(?P<digits>\d{1,30})\s*", re.ASCII)
_FLOAT_RE = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)
_DECIMAL_RE = re.compile(r"\s*[+-]?(\d+\.?\d*|\.\d+)\s*", re.ASCII)
_ALPHA_RE = re.compile(r"[a-z]*", re.IGNORECASE)  # ASP.NET AlphaRouteConstraint: ^[a-z]*$, ignore case
_GUID_FORMATS = (
    re.compile(r"[0-9a-f]{32}", re.I),  # N
    re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.I),  # D
    re.compile(r"\{[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}", re.I),  # B
    re.compile(r"\([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\)", re.I),  # P
)


def _int_in(lo: int, hi: int) -> Callable[[str], bool]:
    def check(value: str) -> bool:
        m = _INT_RE.fullmatch(value)
        return m is not None and lo <= int(m["sign"] + m["digits"]) <= hi

    return check


def _is_float(value: str) -> bool:
    return bool(_FLOAT_RE.fullmatch(value)) and math.isfinite(float(value))


def _is_decimal(value: str) -> bool:
    return bool(_DECIMAL_RE.fullmatch(value))


def _is_bool(value: str) -> bool:
    return value.strip().lower() in ("true", "false")


def _is_guid(value: str) -> bool:
    v = value.strip()
    return any(p.fullmatch(v) for p in _GUID_FORMATS)


def _is_datetime(value: str) -> bool:
    # .NET DateTime.TryParse accepts many cultures' formats; ISO 8601 is the one that matters.
    try:
        _dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


def _is_file(value: str) -> bool:
    # ASP.NET FileNameRouteConstraint: the last path segment contains a dot with text after it.
    last = value.rsplit("/", 1)[-1]
    dot = last.rfind(".")
    return 0 <= dot < len(last) - 1


def _ints(args: list[str], count: int, name: str) -> list[int]:
    if len(args) != count:
        raise ConstraintError(f"constraint '{name}' takes {count} argument(s), got {len(args)}")
    try:
        return [int(a) for a in args]
    except ValueError as exc:
        raise ConstraintError(f"constraint '{name}' needs integer arguments, got {args}") from exc


_INT32 = (-(2**31), 2**31 - 1)
_INT64 = (-(2**63), 2**63 - 1)

_SIMPLE: dict[str, Callable[[str], bool]] = {
    "int": _int_in(*_INT32),
    "long": _int_in(*_INT64),
    "bool": _is_bool,
    "guid": _is_guid,
    "double": _is_float,
    "float": _is_float,
    "decimal": _is_decimal,
    "datetime": _is_datetime,
    "alpha": lambda v: bool(_ALPHA_RE.fullmatch(v)),
    "required": lambda v: v != "",
    "file": _is_file,
    "nonfile": lambda v: not _is_file(v),
}


def make_constraint(name: str, argument: str | None) -> Constraint:
    """Build the predicate for `name(argument)`; raise ConstraintError if it is unknown or malformed."""
    key = name.lower()
    text = name if argument is None else f"{name}({argument})"
    if key in _SIMPLE:
        if argument is not None:
            raise ConstraintError(f"constraint '{name}' takes no argument")
        return Constraint(text, _SIMPLE[key])
    if argument is None:
        raise ConstraintError(f"unknown route constraint '{name}'")
    if key == "regex":
        # RegexRouteConstraint: IgnoreCase | CultureInvariant, and IsMatch (not anchored).
        try:
            pattern = re.compile(argument, re.IGNORECASE)
        except re.error as exc:
            raise ConstraintError(f"bad regex in route constraint: {exc}") from exc
        return Constraint(text, lambda v: pattern.search(v) is not None)
    args = [a.strip() for a in argument.split(",")]
    if key in ("minlength", "maxlength"):
        (n,) = _ints(args, 1, name)
        return Constraint(text, (lambda v: len(v) >= n) if key == "minlength" else (lambda v: len(v) <= n))
    if key == "length":
        if len(args) == 1:
            (n,) = _ints(args, 1, name)
            return Constraint(text, lambda v: len(v) == n)
        lo, hi = _ints(args, 2, name)
        return Constraint(text, lambda v: lo <= len(v) <= hi)
    if key in ("min", "max"):
        (n,) = _ints(args, 1, name)
        bound = (n, _INT64[1]) if key == "min" else (_INT64[0], n)
        return Constraint(text, _int_in(*bound))
    if key == "range":
        lo, hi = _ints(args, 2, name)
        return Constraint(text, _int_in(lo, hi))
    raise ConstraintError(f"unknown route constraint '{name}'")
