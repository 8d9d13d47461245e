"""Task bookkeeping the trigger listeners share: start a logged background task, track per-item
tasks, cancel one task, and drain the tracked ones at stop. Must be used on the event loop thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from typing import Any

__all__ = ["cancel_and_wait", "drain", "start_logged", "track"]

log = logging.getLogger(__name__)


def start_logged(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    """A background loop that logs why it stopped if it ends with an exception."""
    task = asyncio.create_task(coro, name=name)

    def log_crash(t: asyncio.Task[None]) -> None:
        if not t.cancelled() and t.exception() is not None:
            log.error("Listener task %s stopped", name, exc_info=t.exception())

    task.add_done_callback(log_crash)
    return task


def track(tasks: set[asyncio.Task[None]], coro: Coroutine[Any, Any, None], name: str | None = None) -> None:
    """Run `coro` as a task held in `tasks` until it is done (so `drain` can wait for it)."""
    task = asyncio.create_task(coro, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


async def cancel_and_wait(task: asyncio.Task[Any] | None) -> None:
    if task is None:
        return
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def drain(tasks: set[asyncio.Task[None]], timeout: float) -> None:
    """Let the tracked tasks finish for up to `timeout` seconds, then cancel the rest."""
    if not tasks:
        return
    _, pending = await asyncio.wait(set(tasks), timeout=timeout)
    for t in pending:
        t.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
