"""HTTP route templates: parsing and matching, as pure functions (no aiohttp, no I/O).

Templates follow ASP.NET Core syntax as the Functions host uses it (functions-host-facts.md
§1.1): literal segments (matched case-insensitively), `{name}`, `{name:int}` and other inline
constraints, `{name?}`, `{name=default}`, `{*rest}`, complex segments such as `{file}.{ext}`,
and `{{`/`}}` for literal braces. The order in which templates are tried lives in
`selfhost.http.routes`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import unquote

from selfhost.http.constraints import Constraint, ConstraintError, make_constraint

__all__ = ["Literal", "Parameter", "RouteTemplate", "RouteTemplateError", "parse_template", "split_path"]


class RouteTemplateError(ValueError):
    """A route template cannot be parsed; the message says what is wrong and where."""


@dataclass(frozen=True)
class Literal:
    text: str


@dataclass(frozen=True)
class Parameter:
    name: str
    constraints: tuple[Constraint, ...] = ()
    optional: bool = False
    default: str | None = None
    catch_all: bool = False

    @property
    def omittable(self) -> bool:
        return self.optional or self.catch_all or self.default is not None

    def accepts(self, value: str) -> bool:
        return all(c(value) for c in self.constraints)


Segment = tuple[Literal | Parameter, ...]


@dataclass(frozen=True)
class RouteTemplate:
    """A parsed template; `match` takes the decoded path segments of a request."""

    text: str
    segments: tuple[Segment, ...]
    # Per segment: a regex for complex segments ("{a}.{b}"), None for simple ones.
    _complex: tuple[re.Pattern[str] | None, ...] = field(repr=False, compare=False, default=())

    def match(self, path: Sequence[str]) -> dict[str, str] | None:
        """Route values for `path`, or None. Absent optional parameters are left out."""
        values: dict[str, str] = {}
        for idx, seg in enumerate(self.segments):
            head = seg[0]
            if isinstance(head, Parameter) and head.catch_all:
                return values if _bind(values, head, "/".join(path[idx:])) else None
            if idx >= len(path):
                # The path ran out: every remaining segment must be omittable.
                for rest in self.segments[idx:]:
                    param = rest[0]
                    if len(rest) != 1 or not isinstance(param, Parameter) or not param.omittable:
                        return None
                    if not _bind(values, param, ""):
                        return None
                return values
            text = path[idx]
            regex = self._complex[idx]
            if regex is None:
                if isinstance(head, Literal):
                    if text.casefold() != head.text.casefold():
                        return None
                elif text == "" or not _bind(values, head, text):
                    return None
                continue
            m = regex.fullmatch(text)
            if m is None:
                return None
            params = [p for p in seg if isinstance(p, Parameter)]
            for i, param in enumerate(params):
                if not _bind(values, param, m.group(f"p{i}")):
                    return None
        return values if len(path) <= len(self.segments) else None


def _bind(values: dict[str, str], param: Parameter, text: str) -> bool:
    """Record `param`'s value (its default when `text` is empty); False if a constraint fails."""
    if text == "":
        if param.default is None:
            return param.omittable
        text = param.default
    if not param.accepts(text):
        return False
    values[param.name] = text
    return True


def split_path(raw_path: str) -> list[str]:
    """Percent-decoded segments of a raw URL path; one trailing slash is ignored, as ASP.NET does.

    Splitting happens before decoding so that an encoded `%2F` stays inside its segment.
    """
    path = raw_path.split("?", 1)[0].lstrip("/")
    if path.endswith("/"):
        path = path[:-1]
    return [_decode_segment(s) for s in path.split("/")] if path else []


def _decode_segment(segment: str) -> str:
    # Kestrel decodes the path except %2F, so an encoded slash reaches route values as "%2F".
    return unquote(segment.replace("%2F", "%252F").replace("%2f", "%252f"))


def parse_template(text: str) -> RouteTemplate:
    """Parse an ASP.NET route template; raise RouteTemplateError with the reason."""
    try:
        segments = _scan(text.strip().removeprefix("~").strip("/"))
        _validate(segments)
    except (RouteTemplateError, ConstraintError) as exc:
        raise RouteTemplateError(f"invalid route template '{text}': {exc}") from exc
    complex_ = tuple(_segment_regex(seg) if len(seg) > 1 else None for seg in segments)
    return RouteTemplate(text=text, segments=tuple(segments), _complex=complex_)


def _scan(text: str) -> list[Segment]:
    segments: list[Segment] = []
    parts: list[Literal | Parameter] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            parts.append(Literal("".join(buf)))
            buf.clear()

    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("{{", i) or text.startswith("}}", i):
            buf.append(c)
            i += 2
        elif c == "{":
            flush()
            content, i = _read_parameter(text, i + 1)
            parts.append(_parse_parameter(content))
        elif c == "}":
            raise RouteTemplateError(f"unmatched '}}' at position {i}")
        elif c == "/":
            flush()
            if not parts:
                raise RouteTemplateError("empty segment ('//')")
            segments.append(tuple(parts))
            parts = []
            i += 1
        else:
            buf.append(c)
            i += 1
    flush()
    if parts:
        segments.append(tuple(parts))
    return segments


def _read_parameter(text: str, i: int) -> tuple[str, int]:
    """Read a `{...}` body starting after '{'; doubled braces inside are literal (regexes)."""
    out: list[str] = []
    while i < len(text):
        if text.startswith("}}", i) or text.startswith("{{", i):
            out.append(text[i])
            i += 2
        elif text[i] == "}":
            return "".join(out), i + 1
        elif text[i] == "{":
            raise RouteTemplateError("'{' inside a parameter must be doubled")
        else:
            out.append(text[i])
            i += 1
    raise RouteTemplateError("unclosed '{'")


def _parse_parameter(content: str) -> Parameter:
    catch_all = content.startswith("*")
    body = content.lstrip("*")
    i, n = 0, len(body)
    while i < n and body[i] not in ":=" and not (body[i] == "?" and i == n - 1):
        i += 1
    name = body[:i]
    if not name or any(ch in name for ch in "{}/*?"):
        raise RouteTemplateError(f"bad parameter name in '{{{content}}}'")
    constraints: list[Constraint] = []
    while i < n and body[i] == ":":
        start = i = i + 1
        while i < n and body[i] not in ":=(" and not (body[i] == "?" and i == n - 1):
            i += 1
        cname, arg = body[start:i], None
        if i < n and body[i] == "(":
            # The argument ends at the first ')' followed by a delimiter, so regexes may nest parens.
            end = next(
                (k for k in range(i + 1, n) if body[k] == ")" and (k == n - 1 or body[k + 1] in ":=?")), None
            )
            if end is None:
                raise RouteTemplateError(f"unclosed '(' in '{{{content}}}'")
            arg, i = body[i + 1 : end], end + 1
        constraints.append(make_constraint(cname, arg))
    optional, default = False, None
    if i < n and body[i] == "=":
        default = body[i + 1 :]
    elif i < n and body[i] == "?":
        optional = True
    if catch_all and optional:
        raise RouteTemplateError(f"a catch-all parameter cannot be optional: '{{{content}}}'")
    return Parameter(name, tuple(constraints), optional, default, catch_all)


def _validate(segments: list[Segment]) -> None:
    seen: set[str] = set()
    for idx, seg in enumerate(segments):
        for j, part in enumerate(seg):
            if not isinstance(part, Parameter):
                continue
            if part.name.casefold() in seen:
                raise RouteTemplateError(f"parameter '{part.name}' appears twice")
            seen.add(part.name.casefold())
            if part.catch_all and (idx != len(segments) - 1 or len(seg) != 1):
                raise RouteTemplateError("a catch-all parameter must be the whole last segment")
            if len(seg) > 1 and part.omittable:
                raise RouteTemplateError(f"optional parameter '{part.name}' must be alone in its segment")
            if j > 0 and isinstance(seg[j - 1], Parameter):
                raise RouteTemplateError("a segment cannot contain two consecutive parameters")


def _segment_regex(seg: Segment) -> re.Pattern[str]:
    # Greedy groups give ASP.NET's right-to-left result: "{a}-{b}" on "x-y-z" is a="x-y", b="z".
    out, k = [], 0
    for part in seg:
        if isinstance(part, Literal):
            out.append(re.escape(part.text))
        else:
            out.append(f"(?P<p{k}>.+)")
            k += 1
    return re.compile("".join(out), re.IGNORECASE | re.DOTALL)
