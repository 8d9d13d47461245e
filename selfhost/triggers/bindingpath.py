"""Binding expressions: blob trigger path patterns and `{name}`-style output paths. Pure.

Follows the WebJobs SDK (`Bindings/Path/BindingTemplate*.cs`, host facts §4.3):
- a trigger path `container/<blob pattern>` captures each `{param}` with a greedy `.*` (so
  `{name}` spans virtual folders, and in `{blobname}.{blobextension}` the extension is the text
  after the last dot); literal text must match exactly (case-sensitive); `{{`/`}}` escape braces;
- an output path substitutes binding data case-insensitively (`{a.b}` reads into JSON objects),
  plus `{rand-guid}`, `{DateTime}` (format `yyyy-MM-ddTHH-mm-ssK` unless `{DateTime:fmt}`),
  `{sys.randguid}` and `{sys.utcnow}`;
- `%Setting%` is replaced by the app setting before anything else.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

__all__ = [
    "BindingExpressionError",
    "BlobPathPattern",
    "format_template",
    "resolve_setting_references",
    "split_blob_path",
]

_SETTING_REF = re.compile(r"%([^%]+)%")
_DEFAULT_DATETIME_FORMAT = "yyyy-MM-ddTHH-mm-ssK"
# .NET custom date format tokens we translate; anything else is copied literally.
_NET_DATE_TOKENS = re.compile(r"yyyy|yy|MM|dd|HH|mm|ss|fff|ff|f|K")


class BindingExpressionError(ValueError):
    """A path or setting reference cannot be parsed or resolved; the message says which."""


def resolve_setting_references(text: str, environ: Mapping[str, str] | None = None) -> str:
    """Replace each `%Name%` with the app setting `Name` (the host's INameResolver)."""
    env = os.environ if environ is None else environ

    def repl(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in env:
            raise BindingExpressionError(f"app setting {name!r} referenced by {text!r} is not defined")
        return env[name]

    return _SETTING_REF.sub(repl, text)


def _tokens(template: str) -> list[tuple[bool, str]]:
    """Split into (is_parameter, text) tokens, unescaping `{{` and `}}`."""
    out: list[tuple[bool, str]] = []
    literal: list[str] = []
    i = 0
    while i < len(template):
        ch = template[i]
        if ch in "{}" and template[i + 1 : i + 2] == ch:
            literal.append(ch)
            i += 2
        elif ch == "{":
            end = template.find("}", i + 1)
            if end == -1 or end == i + 1:
                raise BindingExpressionError(f"unbalanced or empty '{{' in {template!r}")
            if literal:
                out.append((False, "".join(literal)))
                literal = []
            out.append((True, template[i + 1 : end].strip()))
            i = end + 1
        elif ch == "}":
            raise BindingExpressionError(f"unbalanced '}}' in {template!r}")
        else:
            literal.append(ch)
            i += 1
    if literal:
        out.append((False, "".join(literal)))
    return out


_CONTAINER_NAME = re.compile(r"^(?:\$root|\$web|[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9])$")


def split_blob_path(path: str) -> tuple[str, str]:
    """`container/blob/name` → (`container`, `blob/name`); the blob part may be empty.

    The container must be a valid name (3-63 lower-case letters, digits, single hyphens), so a
    typo fails at start-up instead of as a storage error on every scan.
    """
    container, _, blob = path.strip().lstrip("/").partition("/")
    if not _CONTAINER_NAME.match(container) and "{" not in container:
        raise BindingExpressionError(f"blob path {path!r}: {container!r} is not a valid container name")
    return container, blob


@dataclass(frozen=True)
class BlobPathPattern:
    """A blob trigger's `path`: a literal container plus a capture pattern for the blob name."""

    container: str
    blob_pattern: str
    regex: re.Pattern[str]
    # Literal text before the first parameter: used as the listing prefix.
    prefix: str
    parameter_names: tuple[str, ...]

    @classmethod
    def parse(cls, path: str, environ: Mapping[str, str] | None = None) -> BlobPathPattern:
        container, blob = split_blob_path(resolve_setting_references(path, environ))
        if "{" in container or "}" in container:
            raise BindingExpressionError(f"blob trigger path {path!r}: the container cannot be a parameter")
        tokens = _tokens(blob)
        names: list[str] = []
        parts = ["^"]
        for is_param, text in tokens:
            if not is_param:
                parts.append(re.escape(text))
                continue
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", text) or text in names:
                raise BindingExpressionError(
                    f"blob trigger path {path!r}: bad or repeated parameter {{{text}}}"
                )
            names.append(text)
            parts.append(f"(?P<{text}>.*)")
        parts.append("$")
        prefix = tokens[0][1] if tokens and not tokens[0][0] else ""
        # Python's `.` does not match newlines by default; blob names may contain them.
        regex = re.compile("".join(parts), re.DOTALL)
        return cls(container, blob, regex, prefix, tuple(names))

    def match(self, blob_name: str) -> dict[str, str] | None:
        """Captured parameters for `blob_name`, or None when the blob does not match."""
        m = self.regex.match(blob_name)
        return None if m is None else dict(m.groupdict())


def _net_datetime(when: _dt.datetime, fmt: str) -> str:
    def repl(match: re.Match[str]) -> str:
        token = match.group(0)
        if token == "K":
            offset = when.utcoffset()
            if offset is None:
                return ""
            return (
                "Z" if offset == _dt.timedelta(0) else when.strftime("%z")[:3] + ":" + when.strftime("%z")[3:]
            )
        if token.startswith("f"):
            return f"{when.microsecond:06d}"[: len(token)]
        mapping = {"yyyy": "%Y", "yy": "%y", "MM": "%m", "dd": "%d", "HH": "%H", "mm": "%M", "ss": "%S"}
        return when.strftime(mapping[token])

    return _NET_DATE_TOKENS.sub(repl, fmt)


def _lookup(binding_data: Mapping[str, Any], expression: str) -> Any:
    current: Any = binding_data
    for part in expression.split("."):
        if not isinstance(current, Mapping):
            raise KeyError(expression)
        # Binding data names are case-insensitive in the WebJobs SDK.
        matches = [k for k in current if isinstance(k, str) and k.lower() == part.lower()]
        if not matches:
            raise KeyError(expression)
        current = current[matches[0]]
    return current


def format_template(
    template: str,
    binding_data: Mapping[str, Any],
    *,
    environ: Mapping[str, str] | None = None,
    now: Callable[[], _dt.datetime] | None = None,
    new_guid: Callable[[], str] | None = None,
) -> str:
    """Resolve an output binding path (or queue name) against the invocation's binding data."""
    clock = now or (lambda: _dt.datetime.now(_dt.UTC))
    guid = new_guid or (lambda: str(uuid.uuid4()))
    out: list[str] = []
    for is_param, text in _tokens(resolve_setting_references(template, environ)):
        if not is_param:
            out.append(text)
            continue
        name, _, fmt = text.partition(":")
        key = name.strip().lower()
        if key in ("rand-guid", "sys.randguid"):
            out.append(guid())
        elif key == "datetime":
            out.append(_net_datetime(clock(), fmt or _DEFAULT_DATETIME_FORMAT))
        elif key == "sys.utcnow":
            out.append(clock().isoformat())
        else:
            try:
                value = _lookup(binding_data, name.strip())
            except KeyError:
                raise BindingExpressionError(
                    f"no value for named parameter {{{name}}} in {template!r}"
                ) from None
            out.append(value if isinstance(value, str) else str(value))
    return "".join(out)
