"""Outcome e-mails recorded durably and sent once the mail server answers: the `Outbox` role
(`base`), the table store (`azure`), an in-memory twin (`memory`).

`connect(connection)` is the outbox the service uses (Azurite locally, the host's storage in Azure).
"""

from __future__ import annotations

from shared.outbox.azure import TABLE, TableOutbox
from shared.outbox.base import (
    DEFAULT_CLAIM_TIMEOUT,
    MAX_MESSAGE_BYTES,
    Outbox,
    OutboxEntry,
    OutboxPage,
    OutboxState,
    next_attempt,
)
from shared.outbox.memory import MemoryOutbox

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT",
    "MAX_MESSAGE_BYTES",
    "TABLE",
    "MemoryOutbox",
    "Outbox",
    "OutboxEntry",
    "OutboxPage",
    "OutboxState",
    "TableOutbox",
    "connect",
    "next_attempt",
]


def connect(connection: str) -> Outbox:
    return TableOutbox.connect(connection)
