"""`wait_until`: poll a predicate instead of sleeping a fixed time."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, message: str = ""
) -> T:
    """Return the first truthy value of `predicate()`; fail with `message` after `timeout` s.

    Exceptions raised by the predicate count as "not yet" until the deadline, then re-raise.
    """
    deadline = time.monotonic() + timeout
    last_exc: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last_exc = None
        except Exception as exc:  # noqa: BLE001 - the predicate may fail while a server starts
            last_exc = exc
        if time.monotonic() >= deadline:
            if last_exc is not None:
                raise AssertionError(f"timed out after {timeout}s: {message}") from last_exc
            raise AssertionError(f"timed out after {timeout}s: {message}")
        time.sleep(interval)
