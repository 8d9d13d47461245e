"""MemoryStore and SqliteStore are interchangeable: a Hypothesis state machine applies random
operation sequences to both and requires identical observable results after every operation,
including the ids both assign (per table, from 1). The SQLite store is also closed and reopened
on its file at random points (persistence must not change anything, ids continue).
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from selfhost.durable.memory_store import MemoryStore
from selfhost.durable.sqlite_store import SqliteStore
from selfhost.durable.store import EpisodeCommit, Instance, InstanceQuery, Message, Store, WorkItem

pytestmark = pytest.mark.unit

T = TypeVar("T")
UTC = dt.UTC
BASE = dt.datetime(2025, 1, 1, tzinfo=UTC)
FAR = BASE + dt.timedelta(days=1)

# Small pools so that operations collide: ids that are prefixes of each other, a non-ASCII one,
# an id that sorts before the others, and "ghost", which is never created as an instance.
IDS = ["a", "ab", "b", "b:0", "é", "Z"]
ALL_IDS = [*IDS, "ghost"]
EXECUTIONS = ["e1", "e2", "e3"]
STATUSES = [
    "Pending",
    "Running",
    "Completed",
    "ContinuedAsNew",
    "Failed",
    "Canceled",
    "Terminated",
    "Suspended",
]
KINDS = ["event", "event", "terminate", "suspend", "resume"]

# Aware UTC datetimes with microsecond precision: a few round values (equal timestamps, filter
# boundaries) and arbitrary microseconds within a few seconds.
times = st.one_of(
    st.integers(0, 6).map(lambda s: BASE + dt.timedelta(seconds=s)),
    st.integers(0, 6_000_000).map(lambda us: BASE + dt.timedelta(microseconds=us)),
)
texts = st.text(st.characters(codec="utf-8"), max_size=8)  # any code point but surrogates
opt_texts = st.none() | texts
ids = st.sampled_from(IDS)
any_ids = st.sampled_from(ALL_IDS)

instances = st.builds(
    Instance,
    instance_id=ids,
    name=st.sampled_from(["o", "sub"]),
    execution_id=st.sampled_from(EXECUTIONS),
    status=st.sampled_from(STATUSES),
    input=opt_texts,
    created=times,
    updated=times,
    output=opt_texts,
    custom_status=opt_texts,
    parent_instance_id=st.none() | ids,
    parent_execution_id=st.none() | st.sampled_from(EXECUTIONS),
    parent_task_id=st.none() | st.integers(0, 5),
    state=texts,
)


def messages(instance_ids: st.SearchStrategy[str] = any_ids) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        instance_id=instance_ids,
        kind=st.sampled_from(KINDS),
        body=texts,
        visible_at=times,
        execution_id=st.none() | st.sampled_from(EXECUTIONS),
        timer_id=st.none() | st.integers(0, 3),
        id=st.integers(0, 99),  # callers' ids are ignored; the store assigns its own
    )


work_items = st.builds(
    WorkItem,
    instance_id=ids,
    execution_id=st.sampled_from(EXECUTIONS),
    task_id=st.integers(0, 5),
    name=st.sampled_from(["a", "b"]),
    input=opt_texts,
    kind=st.sampled_from(["activity", "http"]),
    id=st.integers(0, 99),
)

queries = st.builds(
    InstanceQuery,
    created_from=st.none() | times,
    created_to=st.none() | times,
    statuses=st.none() | st.frozensets(st.sampled_from(STATUSES), max_size=3),
    prefix=st.none() | st.sampled_from(["", "a", "b", "b:", "é", "x"]),
    top=st.none() | st.integers(1, 4),
    continuation=st.none() | st.sampled_from(["", "a", "aa", "b", "c", "é"]),
)


def snapshot(store: Store) -> tuple[Any, ...]:
    """Everything observable through the Store protocol."""
    return (
        [store.get_instance(i) for i in ALL_IDS],
        [store.get_history(i) for i in ALL_IDS],
        [store.messages_for(i, FAR) for i in ALL_IDS],
        store.pending_work(),
        store.next_visible_at(),
        store.query_instances(InstanceQuery()),
        store.ready_instances(FAR, 100),
    )


class StoreMachine(RuleBasedStateMachine):
    def __init__(self, folder: Path) -> None:
        super().__init__()
        self.path = folder / "hub.sqlite3"
        self.mem = MemoryStore()
        self.sql = SqliteStore(self.path)
        self.message_ids: set[int] = set()
        self.work_ids: set[int] = set()

    def teardown(self) -> None:
        self.sql.close()

    def both(self, op: Callable[[Store], T]) -> T:
        expected = op(self.mem)
        actual = op(self.sql)
        assert actual == expected, f"memory={expected!r}\nsqlite={actual!r}"
        return expected

    def _some(self, known: set[int]) -> st.SearchStrategy[int]:
        strategy = st.integers(0, 60)
        return st.sampled_from(sorted(known)) | strategy if known else strategy

    # -- writes --------------------------------------------------------------------------------

    @rule(inst=instances, start=messages(ids))
    def create_instance(self, inst: Instance, start: Message) -> None:
        start = Message(inst.instance_id, start.kind, start.body, start.visible_at, start.execution_id)
        existing = self.mem.get_instance(inst.instance_id)
        created = self.both(lambda s: s.create_instance(inst, start))
        # replace terminal ones, refuse active ones
        assert created == (
            existing is None or existing.status in {"Completed", "Failed", "Terminated", "Canceled"}
        )
        if created:
            assert self.mem.get_history(inst.instance_id) == []
            self.message_ids.update(m.id for m in self.mem.messages_for(inst.instance_id, FAR))

    @rule(msg=messages())
    def add_message(self, msg: Message) -> None:
        mid = self.both(lambda s: s.add_message(msg))
        assert mid not in self.message_ids
        self.message_ids.add(mid)

    @rule(data=st.data())
    def commit_episode(self, data: st.DataObject) -> None:
        inst = data.draw(instances)
        existing = self.mem.get_instance(inst.instance_id)
        if existing is not None and data.draw(st.booleans()):
            inst = Instance(**{**existing.__dict__, "status": data.draw(st.sampled_from(STATUSES))})
        commit = EpisodeCommit(
            instance=inst,
            history_append=data.draw(st.lists(texts, max_size=4)),
            history_reset=data.draw(st.booleans()),
            consumed=data.draw(st.lists(self._some(self.message_ids), max_size=4)),
            new_messages=data.draw(st.lists(messages(), max_size=3)),
            new_work=data.draw(st.lists(work_items, max_size=3)),
            new_instances=data.draw(st.lists(instances, max_size=2)),
            cancelled_timers=data.draw(st.lists(st.integers(0, 3), max_size=2)),
            drop_inbox=data.draw(st.booleans()),
        )
        created = self.both(lambda s: s.commit_episode(commit))
        assert [w.id for w in created] == sorted({w.id for w in created})
        assert not {w.id for w in created} & self.work_ids
        assert [(w.instance_id, w.task_id, w.name) for w in created] == [
            (w.instance_id, w.task_id, w.name) for w in commit.new_work
        ]
        self.work_ids.update(w.id for w in created)
        for i in ALL_IDS:
            self.message_ids.update(m.id for m in self.mem.messages_for(i, FAR))

    @rule(data=st.data(), result=messages())
    def complete_work(self, data: st.DataObject, result: Message) -> None:
        work_id = data.draw(self._some(self.work_ids))
        pending = {w.id for w in self.mem.pending_work()}
        done = self.both(lambda s: s.complete_work(work_id, result))
        assert done == (work_id in pending)
        if done:
            self.message_ids.add(max(m.id for i in ALL_IDS for m in self.mem.messages_for(i, FAR)))

    @rule(inst=instances)
    def update_instance(self, inst: Instance) -> None:
        self.both(lambda s: s.update_instance(inst))

    @rule(iid=any_ids, events=st.lists(texts, max_size=4))
    def replace_history(self, iid: str, events: list[str]) -> None:
        self.both(lambda s: s.replace_history(iid, events))

    @rule(victims=st.lists(any_ids, max_size=3))
    def purge(self, victims: list[str]) -> None:
        existed = {i for i in victims if self.mem.get_instance(i) is not None}
        assert self.both(lambda s: s.purge(victims)) == len(existed)
        for i in victims:
            assert self.mem.messages_for(i, FAR) == [] and self.mem.get_history(i) == []

    @rule()
    def reopen_sqlite(self) -> None:
        self.sql.close()
        self.sql = SqliteStore(self.path)

    # -- reads ---------------------------------------------------------------------------------

    @rule(q=queries)
    def query_instances(self, q: InstanceQuery) -> None:
        self.both(lambda s: s.query_instances(q))

    @rule(q=queries, top=st.integers(1, 3))
    def paginate(self, q: InstanceQuery, top: int) -> None:
        base = InstanceQuery(q.created_from, q.created_to, q.statuses, q.prefix)
        everything, token = self.both(lambda s: s.query_instances(base))
        assert token is None
        pages: list[Instance] = []
        continuation = None
        for _ in range(len(ALL_IDS) + 2):
            page_q = InstanceQuery(
                base.created_from, base.created_to, base.statuses, base.prefix, top, continuation
            )
            page, continuation = self.both(lambda s, pq=page_q: s.query_instances(pq))  # type: ignore[misc]
            assert len(page) <= top
            pages.extend(page)
            if continuation is None:
                break
            assert page and continuation == page[-1].instance_id
        assert continuation is None
        assert pages == everything

    @rule(now=times, limit=st.integers(0, 8))
    def ready_instances(self, now: dt.datetime, limit: int) -> None:
        self.both(lambda s: s.ready_instances(now, limit))

    @rule(iid=any_ids, now=times)
    def messages_for(self, iid: str, now: dt.datetime) -> None:
        found = self.both(lambda s: s.messages_for(iid, now))
        assert all(m.visible_at <= now and m.instance_id == iid for m in found)
        assert [m.id for m in found] == sorted(m.id for m in found)

    @rule()
    def next_visible_at(self) -> None:
        self.both(lambda s: s.next_visible_at())

    @rule()
    def pending_work(self) -> None:
        self.both(lambda s: s.pending_work())

    @rule(iid=any_ids)
    def get_history_and_instance(self, iid: str) -> None:
        self.both(lambda s: s.get_history(iid))
        self.both(lambda s: s.get_instance(iid))

    @invariant()
    def stores_agree(self) -> None:
        self.both(snapshot)


def test_memory_and_sqlite_stores_agree(tmp_path: Path) -> None:
    counter = itertools.count()

    def factory() -> StoreMachine:
        folder = tmp_path / f"m{next(counter)}"
        folder.mkdir()
        return StoreMachine(folder)

    run_state_machine_as_test(
        factory,  # type: ignore[arg-type]  # a factory is accepted (documented)
        settings=settings(
            max_examples=60,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )


# --------------------------------------------------------------------------------------------
# targeted cases
# --------------------------------------------------------------------------------------------


@pytest.fixture(params=["memory", "sqlite"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s: Any = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "hub.sqlite3")
    yield s
    s.close()


def _inst(iid: str, status: str = "Running", created: dt.datetime = BASE) -> Instance:
    return Instance(iid, "o", "e1", status, None, created, created)


def test_ids_start_at_one_per_table_and_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "hub.sqlite3"
    sql = SqliteStore(path)
    mem = MemoryStore()
    for s in (mem, sql):
        assert s.create_instance(_inst("a"), Message("a", "event", "{}", BASE)) is True
        assert s.add_message(Message("a", "event", "{}", BASE)) == 2
        work = s.commit_episode(EpisodeCommit(_inst("a"), new_work=[WorkItem("a", "e1", 0, "x", None)]))
        assert [w.id for w in work] == [1]
        assert s.complete_work(1, Message("a", "event", "{}", BASE)) is True
        assert s.complete_work(1, Message("a", "event", "{}", BASE)) is False
        assert s.purge(["a"]) == 1
    sql.close()
    sql = SqliteStore(path)
    try:
        for s in (mem, sql):  # AUTOINCREMENT: ids are never reused, even after deletes and a reopen
            assert s.add_message(Message("a", "event", "{}", BASE)) == 4
            assert [
                w.id
                for w in s.commit_episode(
                    EpisodeCommit(_inst("a"), new_work=[WorkItem("a", "e1", 0, "x", None)])
                )
            ] == [2]
    finally:
        sql.close()


def test_suspended_instances_are_ready_only_for_control_messages(store: Any) -> None:
    store.create_instance(_inst("s", "Suspended"), Message("s", "event", "{}", BASE))
    assert store.ready_instances(FAR, 10) == []
    store.add_message(Message("s", "resume", "{}", BASE))
    assert store.ready_instances(FAR, 10) == ["s"]
    assert [m.kind for m in store.messages_for("s", FAR)] == ["event", "resume"]


def test_future_messages_are_invisible_until_due(store: Any) -> None:
    later = BASE + dt.timedelta(seconds=5, microseconds=1)
    store.create_instance(_inst("t"), Message("t", "event", "{}", later))
    assert store.ready_instances(BASE + dt.timedelta(seconds=5), 10) == []
    assert store.ready_instances(later, 10) == ["t"]
    assert store.next_visible_at() == later
    assert store.messages_for("t", later)[0].visible_at == later


def test_active_instance_is_not_replaced_but_terminal_one_is(store: Any) -> None:
    assert store.create_instance(_inst("x", "Running"), Message("x", "event", "1", BASE))
    assert not store.create_instance(_inst("x", "Pending"), Message("x", "event", "2", BASE))
    store.update_instance(_inst("x", "Completed"))
    store.replace_history("x", ["h1"])
    store.commit_episode(EpisodeCommit(_inst("x", "Completed"), new_work=[WorkItem("x", "e1", 0, "a", None)]))
    assert store.create_instance(_inst("x", "Pending"), Message("x", "event", "3", BASE))
    assert store.get_instance("x").status == "Pending"
    assert store.get_history("x") == [] and store.pending_work() == []
    assert [m.body for m in store.messages_for("x", FAR)] == ["3"]


def test_create_instance_starts_with_empty_history_despite_stray_rows(store: Any) -> None:
    # regression (found by the state machine): SqliteStore kept history rows written under an id
    # that had no instance, so the new instance started with a stale history
    store.replace_history("x", ["stale"])
    assert store.create_instance(_inst("x"), Message("x", "event", "start", BASE))
    assert store.get_history("x") == []


def test_new_child_instance_drops_stray_messages_and_work(store: Any) -> None:
    # regression (found by the state machine): MemoryStore only purged a child's id when an
    # instance existed, so stray messages under that id survived (SqliteStore dropped them)
    store.add_message(Message("kid", "event", "stray", BASE))
    parent = _inst("p")
    store.create_instance(parent, Message("p", "event", "start", BASE))
    child = Instance("kid", "sub", "c1", "Pending", None, BASE, BASE, parent_instance_id="p")
    store.commit_episode(
        EpisodeCommit(
            parent, new_instances=[child], new_messages=[Message("kid", "event", "child start", BASE, "c1")]
        )
    )
    assert [m.body for m in store.messages_for("kid", FAR)] == ["child start"]
    assert store.get_instance("kid") == child


def test_query_with_top_zero_does_not_crash(store: Any) -> None:
    store.create_instance(_inst("a"), Message("a", "event", "{}", BASE))
    page, _token = store.query_instances(InstanceQuery(top=0))
    assert page == []
