"""URL templates of HTTP PUT destinations (pure): `{base}/projects/{project}/{path}`.

A template is literal URL path text (RFC 3986 pchar and "/") with `{name}` placeholders; `{base}`
is the destination's base URL, `{path}` may span several segments, every other value is one
segment. `expand` percent-encodes each value and refuses `.`/`..`/empty values and any result
that would leave the base URL. Errors are `ValidationError`s naming the template's field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote, urlsplit

from shared.errors import ValidationError

__all__ = ["TEMPLATE_FIELD", "check_template", "expand", "is_under", "placeholders"]

TEMPLATE_FIELD: Final = "destination.url_template"
_PATH_PLACEHOLDER: Final = "path"  # the one placeholder whose value may span several segments
_PLACEHOLDER: Final = re.compile(r"\{([^{}]*)\}")
_PLACEHOLDER_NAME: Final = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$")
# RFC 3986 pchar and "/": what a template's literal text may contain (no query, no fragment).
_LITERAL: Final = re.compile(r"^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$")

# --- URL templates (pure) ------------------------------------------------------------------------


def _parse(template: str, field: str) -> list[tuple[str, bool]]:
    """(text, is_placeholder) pieces; refuses stray braces and characters outside a URL path."""
    pieces: list[tuple[str, bool]] = []
    position = 0
    for match in _PLACEHOLDER.finditer(template):
        pieces.append((template[position : match.start()], False))
        name = match.group(1)
        if not _PLACEHOLDER_NAME.match(name):
            raise ValidationError(field, f"placeholder {{{name}}} is not a valid name")
        pieces.append((name, True))
        position = match.end()
    pieces.append((template[position:], False))
    for text, is_placeholder in pieces:
        if not is_placeholder and not _LITERAL.match(text):
            raise ValidationError(field, "literal text must be URL path characters (no ?, # or space)")
    return [(text, is_placeholder) for text, is_placeholder in pieces if text or is_placeholder]


def placeholders(template: str, field: str = TEMPLATE_FIELD) -> tuple[str, ...]:
    """The placeholder names of `template` in order, without `base` (the values a caller owes)."""
    return tuple(dict.fromkeys(t for t, is_ph in _parse(template, field) if is_ph and t != "base"))


def check_template(template: str, field: str = TEMPLATE_FIELD) -> str:
    """`template` when it is `{base}/...` with well-formed placeholders and no `.`/`..`/empty
    literal segment; else ValidationError naming `field`."""
    pieces = _parse(template, field)
    if pieces[:1] != [("base", True)] or not template.startswith("{base}/"):
        raise ValidationError(field, "must start with {base}/")
    if sum(1 for t, is_ph in pieces if is_ph and t == "base") != 1:
        raise ValidationError(field, "{base} may appear only at the start")
    skeleton = "".join("x" if is_ph else text for text, is_ph in pieces[1:])
    if any(segment in ("", ".", "..") for segment in skeleton[1:].split("/")):
        raise ValidationError(field, "path segments must not be empty, . or ..")
    return template


def _check_value(name: str, value: object, field: str) -> str:
    if not isinstance(value, str):
        raise ValidationError(field, f"the value of {{{name}}} must be a string")
    if value in ("", ".", ".."):
        raise ValidationError(field, f"the value of {{{name}}} must not be empty, . or ..")
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in value):
        raise ValidationError(field, f"the value of {{{name}}} must not contain control characters")
    return value


def _encode(name: str, value: object, field: str) -> str:
    """One path segment (a `/` inside is encoded too), or for `{path}` several, each encoded."""
    text = _check_value(name, value, field)
    if name != _PATH_PLACEHOLDER:
        return quote(text, safe="")
    return "/".join(quote(_check_value(name, segment, field), safe="") for segment in text.split("/"))


def expand(template: str, values: Mapping[str, str], *, field: str = TEMPLATE_FIELD) -> str:
    """The URL for `values` (`values["base"]` is the base URL, inserted as is; every other value
    is percent-encoded). Refuses unknown placeholders, `.`/`..`/empty/control-character values
    and any result that would leave the base URL; errors are ValidationError naming `field`."""
    check_template(template, field)
    base = values.get("base")
    if not isinstance(base, str) or not base:
        raise ValidationError(field, "{base} has no value")
    base = base.rstrip("/")
    out = [base]
    for text, is_placeholder in _parse(template, field)[1:]:
        if not is_placeholder:
            out.append(text)
            continue
        if text not in values:
            known = ", ".join(sorted(k for k in values if k != "base")) or "none"
            raise ValidationError(field, f"unknown placeholder {{{text}}} (values given: {known})")
        out.append(_encode(text, values[text], field))
    url = "".join(out)
    if not is_under(base, url):
        raise ValidationError(field, "the expanded URL leaves the base URL")
    return url


def is_under(base: str, url: str) -> bool:
    """`url` has `base`'s scheme and host and a path strictly below `base`'s, without dot segments."""
    try:
        b, u = urlsplit(base), urlsplit(url)
    except ValueError:
        return False
    if (b.scheme.lower(), b.netloc.lower()) != (u.scheme.lower(), u.netloc.lower()) or u.query or u.fragment:
        return False
    prefix = b.path.rstrip("/") + "/"
    if not u.path.startswith(prefix) or u.path == prefix:
        return False
    return not any(s in ("", ".", "..") for s in u.path[len(prefix) :].split("/"))
