"""SQLite Store (WAL): the durable engine's persistence in the runtime's state folder.

One connection guarded by a lock; every Store method is one transaction. `synchronous=NORMAL`
in WAL mode survives a killed process (the crash this runtime promises to survive); set
`SELFHOST_SQLITE_SYNC=FULL` to also survive power loss at the cost of an fsync per commit.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from selfhost.durable.store import (
    TERMINAL_STATUSES,
    EpisodeCommit,
    Instance,
    InstanceQuery,
    Message,
    WorkItem,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    instance_id TEXT PRIMARY KEY, name TEXT NOT NULL, execution_id TEXT NOT NULL,
    status TEXT NOT NULL, input TEXT, output TEXT, custom_status TEXT,
    created TEXT NOT NULL, updated TEXT NOT NULL,
    parent_instance_id TEXT, parent_execution_id TEXT, parent_task_id INTEGER,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_created ON instances(created);
CREATE TABLE IF NOT EXISTS history (
    instance_id TEXT NOT NULL, seq INTEGER NOT NULL, event TEXT NOT NULL,
    PRIMARY KEY (instance_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, kind TEXT NOT NULL,
    body TEXT NOT NULL, visible_at TEXT NOT NULL, execution_id TEXT, timer_id INTEGER
);
CREATE INDEX IF NOT EXISTS messages_visible ON messages(visible_at);
CREATE INDEX IF NOT EXISTS messages_instance ON messages(instance_id, id);
CREATE TABLE IF NOT EXISTS work (
    id INTEGER PRIMARY KEY AUTOINCREMENT, instance_id TEXT NOT NULL, execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL, name TEXT NOT NULL, input TEXT, kind TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS work_instance ON work(instance_id);
"""

_INSTANCE_COLUMNS = (
    "instance_id, name, execution_id, status, input, output, custom_status, created, updated, "
    "parent_instance_id, parent_execution_id, parent_task_id, state"
)


_PUT_INSTANCE = f"INSERT OR REPLACE INTO instances({_INSTANCE_COLUMNS}) VALUES ({','.join('?' * 13)})"
# Messages `ready_instances` may report: events of a suspended instance wait for resume.
_NOT_WAITING = "NOT (COALESCE(i.status, '') = 'Suspended' AND m.kind = 'event')"


def _ts(t: dt.datetime) -> str:
    # Fixed-width UTC text so that string order is time order in SQL comparisons.
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")


def _from_ts(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=dt.UTC)


def _instance_row(inst: Instance) -> tuple[object, ...]:
    return (
        inst.instance_id, inst.name, inst.execution_id, inst.status, inst.input, inst.output,
        inst.custom_status, _ts(inst.created), _ts(inst.updated), inst.parent_instance_id,
        inst.parent_execution_id, inst.parent_task_id, inst.state,
    )  # fmt: skip


def _to_instance(row: sqlite3.Row) -> Instance:
    return Instance(
        instance_id=row[0], name=row[1], execution_id=row[2], status=row[3], input=row[4],
        output=row[5], custom_status=row[6], created=_from_ts(row[7]), updated=_from_ts(row[8]),
        parent_instance_id=row[9], parent_execution_id=row[10], parent_task_id=row[11], state=row[12],
    )  # fmt: skip


def _to_message(row: sqlite3.Row) -> Message:
    return Message(
        id=row[0], instance_id=row[1], kind=row[2], body=row[3], visible_at=_from_ts(row[4]),
        execution_id=row[5], timer_id=row[6],
    )  # fmt: skip


class SqliteStore:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        sync = os.environ.get("SELFHOST_SQLITE_SYNC", "NORMAL").upper()
        self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'FULL' else 'NORMAL'}")
        self._db.execute("PRAGMA foreign_keys=OFF")
        self._db.executescript(SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, args: Sequence[object] = ()) -> list[sqlite3.Row]:
        with self._lock:
            return list(self._db.execute(sql, tuple(args)).fetchall())

    # --- instances -------------------------------------------------------------------------

    @staticmethod
    def _insert_message(db: sqlite3.Connection, m: Message) -> int:
        cur = db.execute(
            "INSERT INTO messages(instance_id, kind, body, visible_at, execution_id, timer_id) "
            "VALUES (?,?,?,?,?,?)",
            (m.instance_id, m.kind, m.body, _ts(m.visible_at), m.execution_id, m.timer_id),
        )
        return int(cur.lastrowid or 0)

    @staticmethod
    def _purge_in(db: sqlite3.Connection, instance_id: str) -> bool:
        cur = db.execute("DELETE FROM instances WHERE instance_id=?", (instance_id,))
        db.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))
        db.execute("DELETE FROM messages WHERE instance_id=?", (instance_id,))
        db.execute("DELETE FROM work WHERE instance_id=?", (instance_id,))
        return cur.rowcount > 0

    def create_instance(self, instance: Instance, start: Message) -> bool:
        with self._tx() as db:
            row = db.execute(
                "SELECT status FROM instances WHERE instance_id=?", (instance.instance_id,)
            ).fetchone()
            if row is not None and row[0] not in TERMINAL_STATUSES:
                return False
            if row is not None:
                self._purge_in(db, instance.instance_id)
            else:
                # A new instance starts with an empty history even if stray rows exist (as MemoryStore).
                db.execute("DELETE FROM history WHERE instance_id=?", (instance.instance_id,))
            db.execute(_PUT_INSTANCE, _instance_row(instance))
            self._insert_message(db, start)
            return True

    def get_instance(self, instance_id: str) -> Instance | None:
        rows = self._read(f"SELECT {_INSTANCE_COLUMNS} FROM instances WHERE instance_id=?", (instance_id,))
        return _to_instance(rows[0]) if rows else None

    def query_instances(self, query: InstanceQuery) -> tuple[list[Instance], str | None]:
        if query.top is not None and query.top < 1:
            return [], None
        where: list[str] = []
        args: list[object] = []
        if query.created_from:
            where.append("created >= ?")
            args.append(_ts(query.created_from))
        if query.created_to:
            where.append("created <= ?")
            args.append(_ts(query.created_to))
        if query.statuses is not None:
            where.append(f"status IN ({','.join('?' * len(query.statuses))})" if query.statuses else "0")
            args.extend(sorted(query.statuses))
        if query.prefix:
            where.append("substr(instance_id, 1, ?) = ?")
            args.extend([len(query.prefix), query.prefix])
        if query.continuation:
            where.append("instance_id > ?")
            args.append(query.continuation)
        sql = f"SELECT {_INSTANCE_COLUMNS} FROM instances"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY instance_id"
        if query.top is not None:
            sql += f" LIMIT {int(query.top) + 1}"
        found = [_to_instance(r) for r in self._read(sql, args)]
        if query.top is not None and len(found) > query.top:
            page = found[: query.top]
            return page, page[-1].instance_id
        return found, None

    def get_history(self, instance_id: str) -> list[str]:
        rows = self._read("SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))
        return [r[0] for r in rows]

    # --- messages --------------------------------------------------------------------------

    def add_message(self, message: Message) -> int:
        with self._tx() as db:
            return self._insert_message(db, message)

    def ready_instances(self, now: dt.datetime, limit: int) -> list[str]:
        rows = self._read(
            "SELECT m.instance_id, MIN(m.id) AS first FROM messages m "
            "LEFT JOIN instances i ON i.instance_id = m.instance_id "
            f"WHERE m.visible_at <= ? AND {_NOT_WAITING} "
            "GROUP BY m.instance_id ORDER BY first LIMIT ?",
            (_ts(now), limit),
        )
        return [r[0] for r in rows]

    def messages_for(self, instance_id: str, now: dt.datetime) -> list[Message]:
        rows = self._read(
            "SELECT id, instance_id, kind, body, visible_at, execution_id, timer_id FROM messages "
            "WHERE instance_id=? AND visible_at <= ? ORDER BY id",
            (instance_id, _ts(now)),
        )
        return [_to_message(r) for r in rows]

    def next_visible_at(self) -> dt.datetime | None:
        rows = self._read(
            "SELECT m.visible_at FROM messages m LEFT JOIN instances i ON i.instance_id = m.instance_id "
            f"WHERE {_NOT_WAITING} ORDER BY m.visible_at LIMIT 1"
        )
        return _from_ts(rows[0][0]) if rows else None

    # --- episodes and work -----------------------------------------------------------------

    def commit_episode(self, commit: EpisodeCommit) -> list[WorkItem]:
        inst = commit.instance
        iid = inst.instance_id
        with self._tx() as db:
            db.execute(_PUT_INSTANCE, _instance_row(inst))
            if commit.history_reset:
                db.execute("DELETE FROM history WHERE instance_id=?", (iid,))
                start = 0
            else:
                row = db.execute("SELECT MAX(seq) FROM history WHERE instance_id=?", (iid,)).fetchone()
                start = (row[0] + 1) if row and row[0] is not None else 0
            db.executemany(
                "INSERT INTO history(instance_id, seq, event) VALUES (?,?,?)",
                [(iid, start + n, ev) for n, ev in enumerate(commit.history_append)],
            )
            db.executemany("DELETE FROM messages WHERE id=?", [(m,) for m in commit.consumed])
            if commit.drop_inbox:
                db.execute("DELETE FROM messages WHERE instance_id=?", (iid,))
            if commit.cancelled_timers:
                db.executemany(
                    "DELETE FROM messages WHERE instance_id=? AND timer_id=?",
                    [(iid, t) for t in commit.cancelled_timers],
                )
            for child in commit.new_instances:
                self._purge_in(db, child.instance_id)
                db.execute(_PUT_INSTANCE, _instance_row(child))
            for m in commit.new_messages:
                self._insert_message(db, m)
            created = []
            for w in commit.new_work:
                cur = db.execute(
                    "INSERT INTO work(instance_id, execution_id, task_id, name, input, kind) VALUES (?,?,?,?,?,?)",
                    (w.instance_id, w.execution_id, w.task_id, w.name, w.input, w.kind),
                )
                created.append(dataclasses.replace(w, id=int(cur.lastrowid or 0)))
            return created

    def complete_work(self, work_id: int, result: Message) -> bool:
        with self._tx() as db:
            cur = db.execute("DELETE FROM work WHERE id=?", (work_id,))
            if cur.rowcount == 0:
                return False
            self._insert_message(db, result)
            return True

    def pending_work(self) -> list[WorkItem]:
        rows = self._read(
            "SELECT instance_id, execution_id, task_id, name, input, kind, id FROM work ORDER BY id"
        )
        return [WorkItem(*r) for r in rows]

    def update_instance(self, instance: Instance) -> None:
        with self._tx() as db:
            db.execute(_PUT_INSTANCE, _instance_row(instance))

    def replace_history(self, instance_id: str, events: Sequence[str]) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM history WHERE instance_id=?", (instance_id,))
            db.executemany(
                "INSERT INTO history(instance_id, seq, event) VALUES (?,?,?)",
                [(instance_id, n, ev) for n, ev in enumerate(events)],
            )

    def purge(self, instance_ids: Sequence[str]) -> int:
        with self._tx() as db:
            return sum(1 for i in instance_ids if self._purge_in(db, i))

    def close(self) -> None:
        with self._lock:
            self._db.close()
