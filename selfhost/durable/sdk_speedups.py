"""Memoized timestamp parsing for the durable SDK's history replay.

Every episode replays the whole history, and the SDK parses each event's `Timestamp` with
`dateutil.parser.parse`, which is ~90% of a replay's CPU. Timestamps of past events never
change, so the runtime caches the parser's own result per string: the SDK receives exactly the
object dateutil produced (datetimes are immutable), only once per timestamp. The SDK's files
and the app stay untouched; this affects only the runtime process.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from functools import lru_cache
from typing import Any

_installed = False


def install() -> None:
    global _installed
    if _installed:
        return
    import importlib

    # The module, not the class of the same name that the package re-exports.
    module = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")

    original: Callable[..., Any] = module.dt_parse

    @lru_cache(maxsize=131072)
    def cached(text: str) -> dt.datetime:
        return original(text)  # type: ignore[no-any-return]

    def dt_parse(text: Any, *args: Any, **kwargs: Any) -> Any:
        if args or kwargs or not isinstance(text, str):
            return original(text, *args, **kwargs)
        return cached(text)

    module.dt_parse = dt_parse  # type: ignore[attr-defined]
    _installed = True
