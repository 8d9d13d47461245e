"""Logging set-up for the runtime process: timestamped lines on stdout, level from SELFHOST_LOG_LEVEL.

User code logs through the standard `logging` module (as on the real worker), so its lines land
in the same stream. Chatty third-party loggers (the Azure SDK's per-request HTTP logging,
aiohttp's access log) are held at WARNING unless the level is DEBUG. aiohttp logs a malformed
request (bad bytes, an oversized header) with a traceback whose message quotes the raw request
line, `code=<key>` included; `_MalformedRequestFilter` turns that into one line without it.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

__all__ = ["configure_logging", "log_level"]

_FORMAT = "%(asctime)s.%(msecs)03dZ %(levelname)-7s %(name)s: %(message)s"
_DATEFMT = "%Y-%m-%dT%H:%M:%S"
_AIOHTTP_SERVER = "aiohttp.server"
_NOISY = ("azure.core.pipeline.policies.http_logging_policy", "azure.identity", "aiohttp.access", "asyncio")


def _utc(secs: float | None = None) -> time.struct_time:
    return time.gmtime(secs)


class _UtcFormatter(logging.Formatter):
    converter = staticmethod(_utc)


class _MalformedRequestFilter(logging.Filter):
    """aiohttp's "Error handling request" for a request it could not parse, without the raw bytes."""

    def filter(self, record: logging.LogRecord) -> bool:
        from aiohttp.http_exceptions import HttpProcessingError

        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            # The text before the first ":" names the problem ("Invalid char in url query"); the
            # rest quotes the input.
            reason = (exc.message or type(exc).__name__).partition(":")[0].strip()
            record.msg, record.args = "Refused a malformed HTTP request (%s %s)", (exc.code, reason)
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def log_level(environ: Mapping[str, str]) -> int:
    """SELFHOST_LOG_LEVEL as a logging level (name or number); INFO when unset or unknown."""
    raw = environ.get("SELFHOST_LOG_LEVEL", "").strip().upper()
    if raw.isdigit():
        return int(raw)
    level = logging.getLevelName(raw) if raw else logging.INFO
    return level if isinstance(level, int) else logging.INFO


def configure_logging(environ: Mapping[str, str] | None = None, stream: TextIO | None = None) -> None:
    level = log_level(os.environ if environ is None else environ)
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(_UtcFormatter(_FORMAT, _DATEFMT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    server_log = logging.getLogger(_AIOHTTP_SERVER)
    if not any(isinstance(f, _MalformedRequestFilter) for f in server_log.filters):
        server_log.addFilter(_MalformedRequestFilter())
    for name in _NOISY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING) if level > logging.DEBUG else level)
    logging.captureWarnings(True)
