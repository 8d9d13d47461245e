"""In-memory Store: the reference implementation the SQLite store is property-tested against,
and a fast store for unit tests. Thread-safe with one lock; nothing survives the process."""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
import itertools
import threading
from collections.abc import Sequence

from selfhost.durable.store import (
    TERMINAL_STATUSES,
    EpisodeCommit,
    Instance,
    InstanceQuery,
    Message,
    WorkItem,
)


def matches(inst: Instance, q: InstanceQuery) -> bool:
    if q.created_from and inst.created < q.created_from:
        return False
    if q.created_to and inst.created > q.created_to:
        return False
    if q.statuses is not None and inst.status not in q.statuses:
        return False
    return not (q.prefix and not inst.instance_id.startswith(q.prefix))


class MemoryStore:
    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._instances: dict[str, Instance] = {}
        self._history: dict[str, list[str]] = {}
        self._messages: dict[int, Message] = {}
        self._work: dict[int, WorkItem] = {}
        # Separate counters per table, like SQLite AUTOINCREMENT, so ids agree across stores.
        self._message_ids = itertools.count(1)
        self._work_ids = itertools.count(1)

    def create_instance(self, instance: Instance, start: Message) -> bool:
        with self._lock:
            existing = self._instances.get(instance.instance_id)
            if existing is not None and existing.status not in TERMINAL_STATUSES:
                return False
            if existing is not None:
                self._purge_one(instance.instance_id)
            self._instances[instance.instance_id] = copy.copy(instance)
            self._history[instance.instance_id] = []
            self._add(start)
            return True

    def get_instance(self, instance_id: str) -> Instance | None:
        with self._lock:
            inst = self._instances.get(instance_id)
            return copy.copy(inst) if inst else None

    def query_instances(self, query: InstanceQuery) -> tuple[list[Instance], str | None]:
        with self._lock:
            ids = sorted(i for i, inst in self._instances.items() if matches(inst, query))
            if query.continuation:
                ids = [i for i in ids if i > query.continuation]
            if query.top is not None and query.top < 1:
                return [], None
            if query.top is not None and len(ids) > query.top:
                page = ids[: query.top]
                return [copy.copy(self._instances[i]) for i in page], page[-1]
            return [copy.copy(self._instances[i]) for i in ids], None

    def get_history(self, instance_id: str) -> list[str]:
        with self._lock:
            return list(self._history.get(instance_id, []))

    def _add(self, message: Message) -> int:
        mid = next(self._message_ids)
        self._messages[mid] = dataclasses.replace(message, id=mid)
        return mid

    def _waits_for_resume(self, m: Message) -> bool:
        inst = self._instances.get(m.instance_id)
        return inst is not None and inst.status == "Suspended" and m.kind == "event"

    def add_message(self, message: Message) -> int:
        with self._lock:
            return self._add(message)

    def ready_instances(self, now: dt.datetime, limit: int) -> list[str]:
        with self._lock:
            first: dict[str, int] = {}
            for mid in sorted(self._messages):
                m = self._messages[mid]
                if m.visible_at > now or m.instance_id in first or self._waits_for_resume(m):
                    continue
                first[m.instance_id] = mid
            return sorted(first, key=lambda i: first[i])[:limit]

    def messages_for(self, instance_id: str, now: dt.datetime) -> list[Message]:
        with self._lock:
            return [
                m
                for mid, m in sorted(self._messages.items())
                if m.instance_id == instance_id and m.visible_at <= now
            ]

    def next_visible_at(self) -> dt.datetime | None:
        with self._lock:
            return min(
                (m.visible_at for m in self._messages.values() if not self._waits_for_resume(m)), default=None
            )

    def commit_episode(self, commit: EpisodeCommit) -> list[WorkItem]:
        with self._lock:
            iid = commit.instance.instance_id
            self._instances[iid] = copy.copy(commit.instance)
            if commit.history_reset:
                self._history[iid] = list(commit.history_append)
            else:
                self._history.setdefault(iid, []).extend(commit.history_append)
            for mid in commit.consumed:
                self._messages.pop(mid, None)
            if commit.drop_inbox:
                for mid in [k for k, m in self._messages.items() if m.instance_id == iid]:
                    del self._messages[mid]
            if commit.cancelled_timers:
                cancelled = set(commit.cancelled_timers)
                for mid in [
                    k for k, m in self._messages.items() if m.instance_id == iid and m.timer_id in cancelled
                ]:
                    del self._messages[mid]
            for child in commit.new_instances:
                # Unconditionally, as SqliteStore does: a new child also drops stray messages,
                # work and history left under its id without an instance.
                self._purge_one(child.instance_id)
                self._instances[child.instance_id] = copy.copy(child)
                self._history[child.instance_id] = []
            for m in commit.new_messages:
                self._add(m)
            created = []
            for w in commit.new_work:
                wid = next(self._work_ids)
                item = dataclasses.replace(w, id=wid)
                self._work[wid] = item
                created.append(item)
            return created

    def complete_work(self, work_id: int, result: Message) -> bool:
        with self._lock:
            if self._work.pop(work_id, None) is None:
                return False
            self._add(result)
            return True

    def pending_work(self) -> list[WorkItem]:
        with self._lock:
            return [self._work[k] for k in sorted(self._work)]

    def update_instance(self, instance: Instance) -> None:
        with self._lock:
            self._instances[instance.instance_id] = copy.copy(instance)

    def replace_history(self, instance_id: str, events: Sequence[str]) -> None:
        with self._lock:
            self._history[instance_id] = list(events)

    def _purge_one(self, instance_id: str) -> bool:
        existed = self._instances.pop(instance_id, None) is not None
        self._history.pop(instance_id, None)
        for mid in [k for k, m in self._messages.items() if m.instance_id == instance_id]:
            del self._messages[mid]
        for wid in [k for k, w in self._work.items() if w.instance_id == instance_id]:
            del self._work[wid]
        return existed

    def purge(self, instance_ids: Sequence[str]) -> int:
        with self._lock:
            return sum(1 for i in instance_ids if self._purge_one(i))

    def close(self) -> None:
        pass
