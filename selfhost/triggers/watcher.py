"""Early wake-up of queue listeners when this host itself enqueues (the SDK's SharedQueueWatcher).

A queue output binding that writes to a queue this process listens on ends that listener's
backoff wait at once (host facts §3.2), so a function chain through queues does not pay the
polling delay. Process-wide on purpose: listeners and output handlers are built separately by
the host, exactly like the SDK's host-level watcher. Must be used from the event loop thread.
"""

from __future__ import annotations

import asyncio

__all__ = ["notify_enqueued", "register", "unregister"]

_waiters: dict[str, set[asyncio.Event]] = {}


def _key(queue_url: str) -> str:
    return queue_url.rstrip("/").lower()


def register(queue_url: str, event: asyncio.Event) -> None:
    _waiters.setdefault(_key(queue_url), set()).add(event)


def unregister(queue_url: str, event: asyncio.Event) -> None:
    events = _waiters.get(_key(queue_url))
    if events is not None:
        events.discard(event)
        if not events:
            del _waiters[_key(queue_url)]


def notify_enqueued(queue_url: str) -> None:
    for event in _waiters.get(_key(queue_url), ()):
        event.set()
