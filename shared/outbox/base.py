"""The mail outbox role: outcome e-mails recorded durably, sent once the mail server answers.

A job's end records its e-mails here (`add`); a notifier (a timer, later) offers what is due
(`due`), takes one (`claim`), sends it over SMTP and records the verdict (`mark_sent`,
`mark_failed`). An operator sees what could not be sent (`list(DEAD)`) and re-queues it
(`retry`) or drops it (`delete`). Implementations: `azure.TableOutbox` (table `mailoutbox`) and
`memory.MemoryOutbox` (tests); both honour the contract of `tests/azurite/test_outbox.py`.

    pending  --claim (due)----------------------------->  sending   (attempts + 1)
    sending  --mark_sent-------------------------------->  sent      (from any state, in fact)
    sending  --mark_failed, schedule not spent---------->  pending   (next_attempt_at later)
    sending  --mark_failed, permanent or schedule spent->  dead
    sending  --claim, after the claim timeout (a crash)->  sending   (offered again by `due`)
    dead     --retry (operator)------------------------->  pending   (attempts 0, due at once)

Once per job, and what the states guarantee:

1. `key` is stable per job, run and recipient role (`{job_id}:{run}:submitter`), so recording a
   job's end twice (an activity re-run, a replay) finds the key taken and queues nothing.
2. `claim` moves pending -> sending with optimistic concurrency (an ETag; a lock in memory):
   of two notifier runs, one wins and the other gets None, so an entry is never sent twice
   *at once*. "sending" is recorded before the SMTP call, "sent" after it.
3. `message_id` is fixed when the entry is made and is part of the stored message, so every
   re-send of one entry carries the same Message-ID header: a mail client or archive that
   de-duplicates on it shows one mail, and an operator can tell a re-send from a second mail.

What can still happen: the process dies (or loses storage) after the SMTP server accepted the
message and before `mark_sent` was written. The entry stays "sending", the claim times out and
the mail goes again: a duplicate with the same Message-ID. That window is one round trip to
table storage after the SMTP `250` reply, against minutes of work before it, so it takes a crash
in that exact instant; a duplicate outcome mail is harmless, a lost one is what seed 001 forbids,
so at-least-once is the right side to err on. A reconcile on claim would close most of the window:
a re-claim of a stale "sending" entry could first ask the mailbox whether `message_id` went out
(IMAP search of a Sent folder, a provider's API). Plain SMTP has no such query, so we cannot.

The claim timeout must exceed the sender's SMTP timeout by a wide margin (10 minutes against
about one), so a stale claim's owner is dead, not slow; mark_* carry no claim token.

The stored message is the rendered MIME text (headers and body, at most `MAX_MESSAGE_BYTES` in
UTF-8), so a re-send needs nothing but the entry. Never imports the Functions libraries.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Final, Protocol, runtime_checkable

__all__ = [
    "DEFAULT_CLAIM_TIMEOUT",
    "MAX_ERROR_CHARS",
    "MAX_MESSAGE_BYTES",
    "Outbox",
    "OutboxEntry",
    "OutboxPage",
    "OutboxState",
    "clip_error",
    "next_attempt",
    "order_key",
    "stamp",
]

# Fits one table entity (1 MiB) as binary properties, compressed or not, with room to spare.
MAX_MESSAGE_BYTES: Final = 768 * 1024
MAX_ERROR_CHARS: Final = 2000
# Far above the SMTP client's timeout (about a minute): a claim this old has no living owner.
DEFAULT_CLAIM_TIMEOUT: Final = timedelta(minutes=10)


class OutboxState(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    DEAD = "dead"


@dataclass(frozen=True)
class OutboxEntry:
    """One e-mail to send. `attempts` counts claims (sends begun); while `sending`, `updated` is
    the claim's instant. Times are aware UTC datetimes."""

    key: str
    job_id: str
    to: tuple[str, ...]
    subject: str
    message: str  # the rendered MIME message, carrying the Message-ID header below
    message_id: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created: datetime
    updated: datetime
    sent_at: datetime | None = None

    @classmethod
    def new(
        cls,
        *,
        key: str,
        job_id: str,
        to: Sequence[str],
        subject: str,
        message: str,
        message_id: str,
        now: datetime,
    ) -> OutboxEntry:
        """A pending entry, due at once."""
        return cls(key, job_id, tuple(to), subject, message, message_id, OutboxState.PENDING, 0, now,
                   None, now, now)  # fmt: skip

    def check(self) -> None:
        """ValueError unless this can be queued: pending, named, addressed, not too large."""
        if self.state is not OutboxState.PENDING:
            raise ValueError(f"outbox entry {self.key}: only a pending entry can be added")
        if not self.key or not self.to or not self.message_id:
            raise ValueError(f"outbox entry {self.key!r}: key, recipients and message_id are required")
        size = len(self.message.encode())
        if size > MAX_MESSAGE_BYTES:
            raise ValueError(f"outbox entry {self.key}: message of {size} bytes exceeds {MAX_MESSAGE_BYTES}")

    def due_at(self, claim_timeout: timedelta) -> datetime | None:
        """When `due` offers this entry: a pending one at its next attempt, a sending one when its
        claim goes stale; never for sent or dead."""
        if self.state is OutboxState.PENDING:
            return self.next_attempt_at
        if self.state is OutboxState.SENDING:
            return self.updated + claim_timeout
        return None

    # Transitions, shared by both implementations so they cannot drift apart.

    def claimed(self, now: datetime, claim_timeout: timedelta) -> OutboxEntry | None:
        due = self.due_at(claim_timeout)
        if due is None or due > now:
            return None
        return replace(self, state=OutboxState.SENDING, attempts=self.attempts + 1, updated=now)

    def sent(self, now: datetime) -> OutboxEntry:
        # Any state: the mail went out (a late verdict after a re-claim is still the truth).
        if self.state is OutboxState.SENT:
            return self
        return replace(self, state=OutboxState.SENT, next_attempt_at=None, updated=now, sent_at=now)

    def failed(
        self, now: datetime, error: str, *, permanent: bool, schedule: Sequence[float]
    ) -> OutboxEntry | None:
        """None when there is nothing to record: only a send in progress can fail."""
        if self.state is not OutboxState.SENDING:
            return None
        after = None if permanent else next_attempt(self.attempts, schedule, now)
        state = OutboxState.DEAD if after is None else OutboxState.PENDING
        return replace(self, state=state, next_attempt_at=after, last_error=clip_error(error), updated=now)

    def retried(self, now: datetime) -> OutboxEntry | None:
        if self.state is not OutboxState.DEAD:
            return None
        return replace(self, state=OutboxState.PENDING, attempts=0, next_attempt_at=now, updated=now)


@dataclass(frozen=True)
class OutboxPage:
    entries: list[OutboxEntry]
    continuation: str | None


@runtime_checkable
class Outbox(Protocol):
    """Durable outbox of e-mails. Storage failures raise TransientError or PermanentError
    (`shared.destinations.blob.storage_errors`); a missing key is None or False, never an error."""

    def add(self, entry: OutboxEntry) -> bool:
        """Queue a pending entry; False (and nothing changes) when its key is already queued."""
        ...

    def get(self, key: str) -> OutboxEntry | None: ...

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        """Entries a notifier may claim at `now`, soonest first: pending ones whose
        next_attempt_at <= now and sending ones whose claim is older than the claim timeout."""
        ...

    def claim(self, key: str, now: datetime) -> OutboxEntry | None:
        """Take a due entry for sending (state sending, attempts + 1); None when it is not due,
        missing, or another run took it first."""
        ...

    def mark_sent(self, key: str, now: datetime) -> OutboxEntry | None:
        """Record that the SMTP server accepted the message (from any state); None when missing."""
        ...

    def mark_failed(
        self, key: str, now: datetime, error: str, *, permanent: bool, schedule: Sequence[float]
    ) -> OutboxEntry | None:
        """Record a failed send of a sending entry: pending again at `next_attempt`, or dead when
        the failure is permanent or `schedule` (retry intervals in seconds) is spent. An entry in
        another state is returned unchanged (a stale claim's late verdict); None when missing."""
        ...

    def list(self, state: OutboxState, limit: int = 50, continuation: str | None = None) -> OutboxPage:
        """Entries in one state, oldest created first; pass `continuation` on for the next page."""
        ...

    def count(self, state: OutboxState, limit: int) -> int:
        """How many entries are in one state, counting at most `limit` (index rows only: the
        cost is proportional to the count, never to the messages)."""
        ...

    def retry(self, key: str, now: datetime) -> bool:
        """Operator action: dead -> pending, attempts reset, due at `now`. False when the entry
        is missing or not dead."""
        ...

    def delete(self, key: str) -> bool:
        """Remove an entry in any state; False when it was missing."""
        ...


def next_attempt(attempts: int, schedule: Sequence[float], now: datetime) -> datetime | None:
    """When to try again after `attempts` tries failed: `now + schedule[attempts - 1]` seconds,
    `now` before any try, None once the schedule is spent (the entry is dead)."""
    if any(not math.isfinite(s) or s < 0 for s in schedule):
        raise ValueError("retry intervals must be finite and not negative")
    if attempts <= 0:
        return now
    if attempts > len(schedule):
        return None
    return now + timedelta(seconds=schedule[attempts - 1])


def clip_error(error: str) -> str:
    text = " ".join(error.split())
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def stamp(instant: datetime) -> str:
    """Fixed-width UTC text that sorts like the instants (table keys, continuations)."""
    if instant.tzinfo is None:
        raise ValueError("outbox times must be timezone-aware")
    return instant.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def order_key(key: str) -> str:
    """A key as table-safe text that sorts like the key (hex of UTF-8 keeps code-point order)."""
    return key.encode().hex()
