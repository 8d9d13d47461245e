"""`MemorySender`: the in-memory twin of an SMTP server for fast tests of whoever sends mail.

It records every message it accepts and can be told to fail the next N sends, transiently or
permanently, the way a greylisting relay (451) or a missing mailbox (550) would.
"""

from __future__ import annotations

import threading
from email.message import EmailMessage
from typing import Literal

from shared.errors import PermanentError, TransientError

__all__ = ["MemorySender"]


class MemorySender:
    """Accepts messages into `sent` (in order); `fail_next` makes the next sends raise."""

    def __init__(self) -> None:
        self.sent: list[EmailMessage] = []
        self.attempts = 0
        self._failures: list[Literal["transient", "permanent"]] = []
        self._lock = threading.Lock()

    def fail_next(self, count: int = 1, *, kind: Literal["transient", "permanent"] = "transient") -> None:
        """The next `count` sends raise TransientError (like SMTP 451) or PermanentError (550)."""
        if count < 0:
            raise ValueError("count must not be negative")
        with self._lock:
            self._failures.extend([kind] * count)

    def send(self, message: EmailMessage) -> None:
        with self._lock:
            self.attempts += 1
            failure = self._failures.pop(0) if self._failures else None
            if failure is None:
                self.sent.append(message)
                return
        if failure == "transient":
            raise TransientError("memory mail server: 451 try again later (as told)")
        raise PermanentError("memory mail server: 550 mailbox unavailable (as told)")

    def to(self, address: str) -> list[EmailMessage]:
        """The accepted messages with `address` among their To recipients."""
        return [m for m in self.sent if address in str(m.get("To", ""))]
