"""`MemoryOutbox`: the mail outbox in a process's memory, for fast tests of notifiers and APIs.

Same contract, orderings and continuations as the table store (one lock stands in for ETags);
not for production: nothing survives the process.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from shared.outbox.base import (
    DEFAULT_CLAIM_TIMEOUT,
    OutboxEntry,
    OutboxPage,
    OutboxState,
    order_key,
    stamp,
)

__all__ = ["MemoryOutbox"]


class MemoryOutbox:
    def __init__(self, claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT) -> None:
        self._entries: dict[str, OutboxEntry] = {}
        self._timeout = claim_timeout
        self._lock = threading.Lock()

    def add(self, entry: OutboxEntry) -> bool:
        entry.check()
        with self._lock:
            if entry.key in self._entries:
                return False
            self._entries[entry.key] = entry
            return True

    def get(self, key: str) -> OutboxEntry | None:
        with self._lock:
            return self._entries.get(key)

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        with self._lock:
            timed = [(e.due_at(self._timeout), e) for e in self._entries.values()]
        ready = [(stamp(at), order_key(e.key), e) for at, e in timed if at is not None and at <= now]
        return [e for _, _, e in sorted(ready, key=lambda t: (t[0], t[1]))[:limit]]

    def claim(self, key: str, now: datetime) -> OutboxEntry | None:
        return self._change(key, lambda e: e.claimed(now, self._timeout), return_current=False)

    def mark_sent(self, key: str, now: datetime) -> OutboxEntry | None:
        return self._change(key, lambda e: e.sent(now), return_current=False)

    def mark_failed(
        self, key: str, now: datetime, error: str, *, permanent: bool, schedule: Sequence[float]
    ) -> OutboxEntry | None:
        def decide(entry: OutboxEntry) -> OutboxEntry | None:
            return entry.failed(now, error, permanent=permanent, schedule=schedule)

        return self._change(key, decide, return_current=True)

    def list(self, state: OutboxState, limit: int = 50, continuation: str | None = None) -> OutboxPage:
        with self._lock:
            rows = sorted(
                (f"{stamp(e.created)}:{order_key(e.key)}", e)
                for e in self._entries.values()
                if e.state is state
            )
        after = [(position, e) for position, e in rows if continuation is None or position > continuation]
        page = after[:limit]
        more = limit > 0 and len(after) > limit
        return OutboxPage([e for _, e in page], page[-1][0] if more else None)

    def count(self, state: OutboxState, limit: int) -> int:
        with self._lock:
            return min(limit, sum(1 for e in self._entries.values() if e.state is state))

    def retry(self, key: str, now: datetime) -> bool:
        return self._change(key, lambda e: e.retried(now), return_current=False) is not None

    def delete(self, key: str) -> bool:
        with self._lock:
            return self._entries.pop(key, None) is not None

    def _change(
        self, key: str, decide: Callable[[OutboxEntry], OutboxEntry | None], *, return_current: bool
    ) -> OutboxEntry | None:
        """Apply `decide` atomically; when it declines, None or (return_current=True) the entry."""
        with self._lock:
            current = self._entries.get(key)
            if current is None:
                return None
            changed = decide(current)
            if changed is None:
                return current if return_current else None
            self._entries[key] = changed
            return changed
