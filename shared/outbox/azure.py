"""`TableOutbox`: the mail outbox in Azure Table storage (table `mailoutbox`; Azurite locally).

Every row is in one partition, so an entry and its index rows change in one entity-group
transaction (all or nothing; the entry row's ETag makes it conditional):

    RowKey k:{hex key}                       the entry: metadata + the message (zlib, in binary
                                             properties m00..m14 of <= 60,000 bytes; 1 MiB/entity)
    RowKey d:{due instant}:{hex key}         while pending (at next_attempt_at) or sending (at the
                                             claim + claim timeout): `due` reads one RowKey range
    RowKey s:{state}:{created}:{hex key}     one per entry: `list(state)` reads one RowKey range

`{hex key}` is the key's UTF-8 in hex (table keys may not hold / \\ # ?; hex keeps the order), the
instants are fixed-width UTC text. `due` and `list` read index rows only, then each listed entry
by its key: cost is proportional to the page, never to the outbox. One partition serves about
2,000 entities a second, far above any mail volume. Transitions merge the metadata only, so the
message is written once (by `add`); reads return it whole.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, TableTransactionError, UpdateMode

from shared.destinations.blob import storage_errors
from shared.errors import TransientError
from shared.jobstore.azure import _table_service  # one way to reach the service's own tables
from shared.outbox.base import (
    DEFAULT_CLAIM_TIMEOUT,
    OutboxEntry,
    OutboxPage,
    OutboxState,
    order_key,
    stamp,
)

__all__ = ["TABLE", "TableOutbox"]

TABLE: Final = "mailoutbox"
_PK: Final = "o"
_CHUNK: Final = 60_000  # a binary property holds at most 64 KiB
_MAX_CHUNKS: Final = 15
# 404: an index row already moved, 409: the key is taken, 412: the entry's ETag changed.
_CONFLICT: Final = frozenset({404, 409, 412})
_TRIES: Final = 5
_Op = tuple[str, Mapping[str, Any]] | tuple[str, Mapping[str, Any], Mapping[str, Any]]


def _entry_rk(key: str) -> str:
    return "k:" + order_key(key)


def _due_rk(entry: OutboxEntry, claim_timeout: timedelta) -> str | None:
    at = entry.due_at(claim_timeout)
    return None if at is None else f"d:{stamp(at)}:{order_key(entry.key)}"


def _state_prefix(state: OutboxState) -> str:
    return f"s:{state.value}:"


def _state_rk(entry: OutboxEntry) -> str:
    return _state_prefix(entry.state) + f"{stamp(entry.created)}:{order_key(entry.key)}"


class TableOutbox:
    def __init__(
        self,
        tables: TableServiceClient,
        table: str = TABLE,
        claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT,
    ) -> None:
        self._tables = tables
        self._name = table
        self._t: TableClient = tables.get_table_client(table)
        self._timeout = claim_timeout
        self._ready = False

    @classmethod
    def connect(
        cls, connection: str, *, table: str = TABLE, claim_timeout: timedelta = DEFAULT_CLAIM_TIMEOUT
    ) -> TableOutbox:
        """From a connection string or an account URL (identity-based), like the job store."""
        return cls(_table_service(connection), table, claim_timeout)

    def _ensure(self) -> None:
        if not self._ready:
            with storage_errors("create table", self._name):
                self._tables.create_table_if_not_exists(self._name)
            self._ready = True

    # -- writes ------------------------------------------------------------------------------

    def add(self, entry: OutboxEntry) -> bool:
        entry.check()
        self._ensure()
        ops: list[_Op] = [
            ("create", _entity(entry, with_message=True)),
            ("create", _index(_state_rk(entry), entry)),
        ]
        due = _due_rk(entry, self._timeout)
        if due is not None:
            ops.append(("create", _index(due, entry)))
        return self._submit(ops, "queue mail", entry.key)

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

    def retry(self, key: str, now: datetime) -> bool:
        return self._change(key, lambda e: e.retried(now), return_current=False) is not None

    def delete(self, key: str) -> bool:
        for _ in range(_TRIES):
            found = self._read(key)
            if found is None:
                return False
            entry, etag = found
            ops: list[_Op] = [
                ("delete", _ref(_entry_rk(key)), _if_match(etag)),
                ("delete", _ref(_state_rk(entry))),
            ]
            due = _due_rk(entry, self._timeout)
            if due is not None:
                ops.append(("delete", _ref(due)))
            if self._submit(ops, "delete mail", key):
                return True
        raise TransientError(f"delete mail {key}: the entry kept changing; try again")

    def _change(
        self, key: str, decide: Callable[[OutboxEntry], OutboxEntry | None], *, return_current: bool
    ) -> OutboxEntry | None:
        """Read, decide, write conditionally on the ETag; on a conflict read again (the decision
        may now be different: another run's claim makes ours decline)."""
        for _ in range(_TRIES):
            found = self._read(key)
            if found is None:
                return None
            current, etag = found
            changed = decide(current)
            if changed is None:
                return current if return_current else None
            if self._submit(self._moves(current, changed, etag), "update mail", key):
                return changed
        raise TransientError(f"update mail {key}: the entry kept changing; try again")

    def _moves(self, old: OutboxEntry, new: OutboxEntry, etag: str) -> list[_Op]:
        ops: list[_Op] = [
            ("update", _entity(new, with_message=False), {"mode": UpdateMode.MERGE, **_if_match(etag)})
        ]
        for before, after in (
            (_state_rk(old), _state_rk(new)),
            (_due_rk(old, self._timeout), _due_rk(new, self._timeout)),
        ):
            if before == after:
                continue
            if before is not None:
                ops.append(("delete", _ref(before)))
            if after is not None:
                ops.append(("create", _index(after, new)))
        return ops

    def _submit(self, ops: list[_Op], action: str, key: str) -> bool:
        """True when the transaction committed, False when it lost a race (nothing changed)."""
        with storage_errors(action, key):
            try:
                self._t.submit_transaction(ops)
            except TableTransactionError as exc:
                if exc.status_code in _CONFLICT:
                    return False
                raise
        return True

    # -- reads -------------------------------------------------------------------------------

    def get(self, key: str) -> OutboxEntry | None:
        found = self._read(key)
        return None if found is None else found[0]

    def _read(self, key: str) -> tuple[OutboxEntry, str] | None:
        self._ensure()
        with storage_errors("read mail", key):
            try:
                entity = self._t.get_entity(_PK, _entry_rk(key))
            except ResourceNotFoundError:
                return None
        return _entry(entity), str(entity.metadata["etag"])

    def due(self, now: datetime, limit: int) -> list[OutboxEntry]:
        out: list[OutboxEntry] = []
        for _, key in self._rows("d:", f"d:{stamp(now)};", limit):
            entry = self.get(key)
            at = None if entry is None else entry.due_at(self._timeout)
            if entry is not None and at is not None and at <= now:  # else it moved since
                out.append(entry)
        return out

    def list(self, state: OutboxState, limit: int = 50, continuation: str | None = None) -> OutboxPage:
        prefix = _state_prefix(state)
        rows = list(self._rows(prefix + (continuation or ""), prefix[:-1] + ";", limit + 1, after=True))
        entries = [
            e for e in (self.get(key) for _, key in rows[:limit]) if e is not None and e.state is state
        ]
        more = limit > 0 and len(rows) > limit
        return OutboxPage(entries, rows[limit - 1][0][len(prefix) :] if more else None)

    def count(self, state: OutboxState, limit: int) -> int:
        prefix = _state_prefix(state)
        return sum(1 for _ in self._rows(prefix, prefix[:-1] + ";", limit))

    def _rows(self, low: str, high: str, limit: int, *, after: bool = False) -> Iterator[tuple[str, str]]:
        """(RowKey, key) of index rows with low <= RowKey < high (low < RowKey with `after`)."""
        if limit <= 0:
            return
        self._ensure()
        op = "gt" if after else "ge"
        with storage_errors("list mail", self._name):
            rows = self._t.query_entities(
                f"PartitionKey eq @pk and RowKey {op} @low and RowKey lt @high",
                parameters={"pk": _PK, "low": low, "high": high},
                select=["RowKey", "key"],
                results_per_page=min(limit, 1000),
            )
            for n, row in enumerate(rows, start=1):
                yield str(row["RowKey"]), str(row["key"])
                if n >= limit:
                    return


def _ref(row_key: str) -> dict[str, Any]:
    return {"PartitionKey": _PK, "RowKey": row_key}


def _index(row_key: str, entry: OutboxEntry) -> dict[str, Any]:
    return {**_ref(row_key), "key": entry.key}


def _if_match(etag: str) -> dict[str, Any]:
    return {"etag": etag, "match_condition": MatchConditions.IfNotModified}


def _opt(instant: datetime | None) -> str:
    return "" if instant is None else stamp(instant)


def _entity(entry: OutboxEntry, *, with_message: bool) -> dict[str, Any]:
    # Absent values are "" rather than missing: a MERGE leaves a missing property as it was.
    entity: dict[str, Any] = {
        **_ref(_entry_rk(entry.key)),
        "key": entry.key,
        "job_id": entry.job_id,
        "to": json.dumps(list(entry.to)),
        "subject": entry.subject,
        "message_id": entry.message_id,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_attempt_at": _opt(entry.next_attempt_at),
        "last_error": entry.last_error or "",
        "created": stamp(entry.created),
        "updated": stamp(entry.updated),
        "sent_at": _opt(entry.sent_at),
    }
    if with_message:
        data = zlib.compress(entry.message.encode())
        chunks = [data[i : i + _CHUNK] for i in range(0, len(data), _CHUNK)] or [b""]
        if len(chunks) > _MAX_CHUNKS:  # unreachable under MAX_MESSAGE_BYTES; a guard for edits
            raise ValueError(f"outbox entry {entry.key}: message too large to store")
        entity["chunks"] = len(chunks)
        entity.update({f"m{i:02d}": chunk for i, chunk in enumerate(chunks)})
    return entity


def _instant(text: Any) -> datetime | None:
    return datetime.strptime(str(text), "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC) if text else None


def _entry(entity: Mapping[str, Any]) -> OutboxEntry:
    data = b"".join(bytes(entity[f"m{i:02d}"]) for i in range(int(entity["chunks"])))
    created = _instant(entity["created"]) or datetime.min.replace(tzinfo=UTC)  # always written
    return OutboxEntry(
        key=str(entity["key"]),
        job_id=str(entity["job_id"]),
        to=tuple(json.loads(entity["to"])),
        subject=str(entity["subject"]),
        message=zlib.decompress(data).decode() if data else "",
        message_id=str(entity["message_id"]),
        state=OutboxState(entity["state"]),
        attempts=int(entity["attempts"]),
        next_attempt_at=_instant(entity.get("next_attempt_at")),
        last_error=str(entity["last_error"]) or None,
        created=created,
        updated=_instant(entity["updated"]) or created,
        sent_at=_instant(entity.get("sent_at")),
    )
