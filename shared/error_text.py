"""Error texts written for people: one or two sentences, never a traceback or a credential.

The durable SDK hands an orchestrator a failed task's error as `"{Reason} \\n {Details}"`, where
the reason reads `Activity function 'X' failed: TransientError: <message>` (and on the Azure
Python worker `... failed: Result: Failure\\nException: <module.Class>: <message>\\nStack: ...`)
and the details are the traceback. `readable` keeps only the message, so job records and status
answers say what failed and where (the URL without credentials, the HTTP status, the server's
words); the traceback stays in the log of the process that raised it. Pure functions.
"""

from __future__ import annotations

import re
from typing import Final

from shared.sources import redact_url

__all__ = ["MAX_ERROR_CHARS", "readable"]

MAX_ERROR_CHARS: Final = 400

_WRAPPER: Final = re.compile(
    r"^(?:Activity function|Sub-orchestration|Orchestrator function) '[^']*' failed:\s*"
)
_TERMINATED: Final = re.compile(r"^Sub-orchestration '[^']*' was terminated:\s*")
# `shared.errors.TransientError: ...`, `TransientError: ...`, `httpx.ConnectError: ...`
_EXCEPTION_CLASS: Final = re.compile(r"^(?:[A-Za-z_][\w]*\.)*[A-Z]\w*(?:Error|Exception|Exit|Warning):\s*")
_URL: Final = re.compile(r"https?://[^\s'\"<>]+")


def _redacted(match: re.Match[str]) -> str:
    url = match.group(0)
    trail = len(url) - len(url.rstrip(":;,.)"))  # punctuation of the sentence, not of the URL
    return redact_url(url[: len(url) - trail]) + url[len(url) - trail :]


def readable(text: object, limit: int = MAX_ERROR_CHARS) -> str:
    """The human part of an error text (an exception or its string), at most `limit` characters."""
    message = str(text).replace("\r", "")
    # The SDK's separator between reason and details; the traceback is never wanted here.
    message = message.split(" \n ", 1)[0]
    exception_line = next(
        (line for line in message.splitlines() if line.startswith("Exception: ")), None
    )  # the Azure worker's layout
    if exception_line is not None:
        message = exception_line.removeprefix("Exception: ")
    else:
        message = message.split("\nStack:", 1)[0].split("\nTraceback (most recent call last)", 1)[0]
    terminated = _TERMINATED.match(message)
    if terminated:
        message = "the work was terminated: " + message[terminated.end() :]
    message = _WRAPPER.sub("", message)
    message = _EXCEPTION_CLASS.sub("", message)
    message = _URL.sub(_redacted, message)
    message = " ".join(message.split()) or "unknown error"
    return message if len(message) <= limit else message[: limit - 1].rstrip() + "…"
