"""URLs in the log carry no query values (issue 11): httpx logs every request's URL at INFO, and a
source's `next` link or a SAS URL can hold a token in its query.

`install()` adds a filter to the `httpx` logger that rewrites each URL argument to
`scheme://host/path?name=…&other=…` (names kept, values and user-info dropped). Idempotent;
called once by the composition root. Pure but for the logging configuration it changes.
"""

from __future__ import annotations

import logging
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["QueryRedactingFilter", "install", "redact_query"]

HIDDEN: Final = "…"
_LOGGERS: Final = ("httpx", "httpcore")


def redact_query(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    query = "&".join(f"{name}={HIDDEN}" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, query, ""))


def _scrubbed(value: Any) -> Any:
    text = str(value) if type(value).__name__ == "URL" else value  # httpx.URL, without importing httpx
    if isinstance(text, str) and text.startswith(("http://", "https://")) and ("?" in text or "@" in text):
        return redact_query(text)
    return value


class QueryRedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_scrubbed(a) for a in record.args)
        elif isinstance(record.msg, str):
            record.msg = _scrubbed(record.msg)
        return True


def install() -> None:
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, QueryRedactingFilter) for f in logger.filters):
            logger.addFilter(QueryRedactingFilter())
