"""The mail outbox contract, run against the table store on Azurite and against the in-memory
twin: add is idempotent on the key, `due` is ordered and limited, one of two claims wins, a stale
claim is offered again, failures follow the retry schedule to dead, an operator retries and
deletes, and listing by state pages without loss or duplication. Time is passed in, never slept."""

from __future__ import annotations

import base64
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from shared.outbox import (
    MAX_MESSAGE_BYTES,
    MemoryOutbox,
    Outbox,
    OutboxEntry,
    OutboxPage,
    OutboxState,
    TableOutbox,
)
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite

T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
TIMEOUT = timedelta(minutes=10)
Factory = Callable[[], Outbox]


@pytest.fixture(params=["azure", "memory"])
def outboxes(request: pytest.FixtureRequest) -> Iterator[Factory]:
    """Makes handles on one outbox (two handles = two notifier runs); a fresh table per test."""
    if request.param == "memory":
        shared = MemoryOutbox(TIMEOUT)
        yield lambda: shared
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    table = "outbox" + uuid.uuid4().hex[:12]
    yield lambda: TableOutbox.connect(azurite.connection_string, table=table, claim_timeout=TIMEOUT)


@pytest.fixture
def outbox(outboxes: Factory) -> Outbox:
    return outboxes()


def mail(n: int | str, *, at: datetime = T0, message: str | None = None, **fields: object) -> OutboxEntry:
    job = f"job{n}"
    entry = OutboxEntry.new(key=f"{job}:1:submitter", job_id=job, to=("a@example.com", "b@example.com"),
                            subject=f"Export {job} succeeded", message=message or f"Subject: {job}\r\n\r\nDone.\r\n",
                            message_id=f"<{job}.1.submitter@bulk-export.local>", now=at)  # fmt: skip
    return replace(entry, **fields)  # type: ignore[arg-type]


def test_add_is_idempotent_on_the_key(outbox: Outbox) -> None:
    first = mail(1)
    assert outbox.add(first) is True
    assert outbox.add(replace(first, subject="a second rendering")) is False
    assert outbox.get(first.key) == first
    assert outbox.get("job-missing:1:submitter") is None
    assert [e.key for e in outbox.due(T0, 10)] == [first.key]  # queued once
    with pytest.raises(ValueError, match="only a pending entry"):
        outbox.add(replace(mail(2), state=OutboxState.SENT))


def test_a_large_message_round_trips_and_a_too_large_one_is_refused(outbox: Outbox) -> None:
    # Random bytes as base64 (an attachment) barely compress: the stored form must still fit.
    head = "Subject: x\r\n\r\n"
    body = base64.b64encode(os.urandom(MAX_MESSAGE_BYTES)).decode()[: MAX_MESSAGE_BYTES - len(head)]
    big = mail(1, message=head + body, key="odd/key #?\\ with ü")
    assert outbox.add(big) is True
    assert outbox.get(big.key) == big
    with pytest.raises(ValueError, match="exceeds"):
        outbox.add(mail(2, message="x" * (MAX_MESSAGE_BYTES + 1)))


def test_due_is_soonest_first_limited_and_only_what_is_due(outbox: Outbox) -> None:
    for n, minutes in enumerate([30, 5, 20, 0, 10, 90]):
        outbox.add(mail(n, next_attempt_at=T0 + timedelta(minutes=minutes)))
    now = T0 + timedelta(minutes=30)
    assert [e.job_id for e in outbox.due(now, 10)] == ["job3", "job1", "job4", "job2", "job0"]
    assert [e.job_id for e in outbox.due(now, 2)] == ["job3", "job1"]
    assert outbox.due(T0 - timedelta(seconds=1), 10) == []
    assert outbox.due(now, 0) == []
    outbox.claim("job3:1:submitter", now)
    outbox.mark_sent("job3:1:submitter", now)
    assert [e.job_id for e in outbox.due(now, 10)] == ["job1", "job4", "job2", "job0"]


def test_of_two_claims_one_wins(outboxes: Factory) -> None:
    first, second = outboxes(), outboxes()
    first.add(mail(1))
    claimed = first.claim(mail(1).key, T0)
    assert claimed is not None and claimed.state is OutboxState.SENDING and claimed.attempts == 1
    assert second.claim(mail(1).key, T0) is None
    assert first.claim(mail(1).key, T0 + timedelta(minutes=1)) is None  # a fresh claim holds
    assert first.claim("job-missing:1:submitter", T0) is None
    assert [e.key for e in first.due(T0, 10)] == []

    # At once, from several handles: every entry is claimed exactly once.
    keys = [mail(n).key for n in range(2, 6)]
    for n in range(2, 6):
        first.add(mail(n))
    handles = [outboxes() for _ in range(4)]
    start = threading.Barrier(len(handles))

    def run(handle: Outbox) -> list[str]:
        start.wait()
        return [k for k in keys if handle.claim(k, T0) is not None]

    with ThreadPoolExecutor(len(handles)) as pool:
        won = [k for got in pool.map(run, handles) for k in got]
    assert sorted(won) == sorted(keys)


def test_a_pending_entry_is_not_claimed_before_its_time(outbox: Outbox) -> None:
    outbox.add(mail(1, next_attempt_at=T0 + timedelta(minutes=5)))
    assert outbox.claim(mail(1).key, T0) is None
    assert outbox.claim(mail(1).key, T0 + timedelta(minutes=5)) is not None


def test_a_stale_claim_is_offered_again_after_the_claim_timeout(outbox: Outbox) -> None:
    outbox.add(mail(1))
    outbox.claim(mail(1).key, T0)  # ... and the process dies before any verdict
    assert outbox.due(T0 + TIMEOUT - timedelta(seconds=1), 10) == []
    [stale] = outbox.due(T0 + TIMEOUT, 10)
    assert stale.state is OutboxState.SENDING and stale.updated == T0
    again = outbox.claim(stale.key, T0 + TIMEOUT)
    assert again is not None and again.attempts == 2 and again.message_id == stale.message_id
    assert outbox.claim(stale.key, T0 + TIMEOUT) is None
    sent = outbox.mark_sent(stale.key, T0 + TIMEOUT + timedelta(seconds=3))
    assert sent is not None and sent.state is OutboxState.SENT and sent.sent_at is not None
    assert outbox.due(T0 + 10 * TIMEOUT, 10) == []
    assert outbox.mark_sent(stale.key, T0 + 10 * TIMEOUT) == sent  # idempotent


def test_failures_follow_the_schedule_to_dead(outbox: Outbox) -> None:
    schedule = [300.0, 600.0]
    key = mail(1).key
    outbox.add(mail(1))
    now = T0
    for delay in schedule:
        outbox.claim(key, now)
        failed = outbox.mark_failed(key, now, "smtp 127.0.0.1:1025: connection refused", permanent=False,
                                    schedule=schedule)  # fmt: skip
        assert failed is not None and failed.state is OutboxState.PENDING
        assert failed.next_attempt_at == now + timedelta(seconds=delay)
        assert outbox.due(now + timedelta(seconds=delay - 1), 10) == []
        now += timedelta(seconds=delay)
    outbox.claim(key, now)
    dead = outbox.mark_failed(key, now, "smtp: connection\nrefused", permanent=False, schedule=schedule)
    assert dead is not None and dead.state is OutboxState.DEAD and dead.attempts == 3
    assert dead.next_attempt_at is None and dead.last_error == "smtp: connection refused"
    assert outbox.due(now + timedelta(days=30), 10) == []
    assert outbox.get(key) == dead
    # A late verdict for an entry that is not being sent changes nothing.
    assert outbox.mark_failed(key, now, "late", permanent=False, schedule=schedule) == dead
    assert outbox.mark_failed("job-missing:1:submitter", now, "x", permanent=False, schedule=[]) is None

    outbox.add(mail(2))
    outbox.claim(mail(2).key, T0)
    refused = outbox.mark_failed(mail(2).key, T0, "550 no such user", permanent=True, schedule=schedule)
    assert refused is not None and refused.state is OutboxState.DEAD and refused.attempts == 1


def test_an_operator_retries_and_deletes(outbox: Outbox) -> None:
    key = mail(1).key
    outbox.add(mail(1))
    outbox.claim(key, T0)
    outbox.mark_failed(key, T0, "550 mailbox unavailable", permanent=True, schedule=[60])
    assert outbox.retry("job-missing:1:submitter", T0) is False
    later = T0 + timedelta(hours=2)
    assert outbox.retry(key, later) is True
    again = outbox.get(key)
    assert again is not None and again.state is OutboxState.PENDING and again.attempts == 0
    assert again.next_attempt_at == later and again.last_error == "550 mailbox unavailable"
    assert outbox.retry(key, later) is False  # only a dead entry is retried
    assert [e.key for e in outbox.due(later, 10)] == [key]
    assert [e.key for e in outbox.list(OutboxState.DEAD).entries] == []

    assert outbox.delete(key) is True
    assert outbox.get(key) is None and outbox.due(later, 10) == []
    assert outbox.list(OutboxState.PENDING).entries == []
    assert outbox.delete(key) is False
    assert outbox.add(mail(1)) is True  # the key is free again


def test_listing_by_state_pages_oldest_first(outbox: Outbox) -> None:
    entries = [mail(n, at=T0 + timedelta(minutes=n)) for n in range(8)]
    for entry in entries:
        outbox.add(entry)
    for n in (1, 4, 6):
        outbox.claim(entries[n].key, T0 + timedelta(hours=1))
        outbox.mark_failed(entries[n].key, T0 + timedelta(hours=1), "refused", permanent=True, schedule=[])

    def listed(state: OutboxState, limit: int) -> list[str]:
        out: list[str] = []
        continuation = None
        while True:
            page = outbox.list(state, limit, continuation)
            assert len(page.entries) <= limit
            out += [e.job_id for e in page.entries]
            if page.continuation is None:
                return out
            continuation = page.continuation

    assert listed(OutboxState.DEAD, 2) == ["job1", "job4", "job6"]
    assert listed(OutboxState.PENDING, 2) == ["job0", "job2", "job3", "job5", "job7"]
    assert listed(OutboxState.PENDING, 5) == ["job0", "job2", "job3", "job5", "job7"]
    assert listed(OutboxState.SENT, 3) == []
    assert outbox.list(OutboxState.PENDING, 0) == OutboxPage([], None)
    [one] = outbox.list(OutboxState.DEAD, 1).entries
    assert one == outbox.get(entries[1].key) and one.last_error == "refused"


def test_a_claim_that_loses_the_etag_race_declines(azurite: Azurite) -> None:
    """Table store only: the second claim read the entry before the first one wrote it."""
    table = "outbox" + uuid.uuid4().hex[:12]
    winner = TableOutbox.connect(azurite.connection_string, table=table, claim_timeout=TIMEOUT)
    loser = TableOutbox.connect(azurite.connection_string, table=table, claim_timeout=TIMEOUT)
    winner.add(mail(1))
    read = loser._read
    reads = 0

    def read_then_lose(key: str) -> tuple[OutboxEntry, str] | None:
        nonlocal reads
        found = read(key)
        reads += 1
        if reads == 1:
            assert winner.claim(key, T0) is not None  # lands between the loser's read and write
        return found

    loser._read = read_then_lose  # type: ignore[method-assign]
    assert loser.claim(mail(1).key, T0) is None
    assert reads == 2  # it read again after the conflict and saw the fresh claim
    entry = winner.get(mail(1).key)
    assert entry is not None and entry.attempts == 1
