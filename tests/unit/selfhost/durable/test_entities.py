"""Durable entities: the pure planning in selfhost/durable/entities.py and the orchestration side
of CallEntity/SignalEntity in episode.py.

The last tests drive the real SDK (an orchestrator and a Counter entity built with
`df.Orchestrator.create` / `df.Entity.create`) through plan_episode and plan_entity_batch with no
engine and no store, proving host and SDK agree on every shape (EventSent re-keying, responses,
errors, inputs and state).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df
import pytest

from selfhost.durable import entities as ent
from selfhost.durable import history as h
from selfhost.durable.episode import (
    Bookkeeping,
    Catalog,
    Reply,
    RewindRefused,
    plan_episode,
    plan_renotify,
    plan_rewind,
    rewind_blocker,
)
from selfhost.durable.history import EventType
from selfhost.durable.host import durable_index
from selfhost.durable.store import EpisodeCommit, Instance, Message
from selfhost.functions import FunctionInfo
from tests.support import history_builders as b
from tests.support.history_builders import T0, at, started_event

pytestmark = pytest.mark.unit

Event = dict[str, Any]
CATALOG = Catalog(
    activities=frozenset({"a"}), orchestrators=frozenset({"o"}), entities=frozenset({"counter"})
)
OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"


def signal_entity(instance_id: str, operation: str, value: Any = None) -> dict[str, Any]:
    return {"actionType": 9, "instanceId": instance_id, "operation": operation, "input": json.dumps(value)}


def make_inst(status: str = "Pending", instance_id: str = "i1", execution_id: str = "e1") -> Instance:
    return Instance(instance_id, "o", execution_id, status, None, T0, T0)


def episode(inst: Instance, delivered: list[Event], reply: str, now: dt.datetime = T0) -> EpisodeCommit:
    return plan_episode(inst, Bookkeeping.loads(inst.state), delivered, Reply.parse(reply), now, CATALOG)


def events_of(commit: EpisodeCommit) -> list[Event]:
    return [json.loads(e) for e in commit.history_append]


def request_of(message: Message) -> dict[str, Any]:
    event = json.loads(message.body)
    assert event["EventType"] == EventType.EventRaised and event["Name"] == "op"
    for key in ("EventId", "IsPlayed", "Timestamp", "Input"):
        assert key in event
    return json.loads(event["Input"])  # type: ignore[no-any-return]


def request_message(mid: int, op: str, value: Any = None, *, signal: bool = False, parent: str | None = "i1",
                    execution: str | None = "e1", rid: str | None = None) -> Message:  # fmt: skip
    body = ent.request_message(
        request_id=rid or f"r{mid}", operation=op, signal=signal, input_text=ent.operation_input(json.dumps(value)),
        now=T0, parent_instance_id=parent, parent_execution_id=execution,
    )  # fmt: skip
    m = ent.request_to("@counter@k1", body, T0)
    return Message(m.instance_id, m.kind, m.body, m.visible_at, m.execution_id, m.timer_id, mid)


def entity_reply(
    exists: bool, state: Any, *results: tuple[Any, bool], signals: list[Any] | None = None
) -> str:
    return json.dumps(
        {
            "entityExists": exists,
            "entityState": json.dumps(state),
            "results": [
                {"isError": err, "duration": 0, "startTime": 0, "result": json.dumps(r)} for r, err in results
            ],
            "signals": signals or [],
        }
    )


# --------------------------------------------------------------------------------------------
# ids and inputs
# --------------------------------------------------------------------------------------------


def test_scheduler_ids_lowercase_the_name_like_the_sdk() -> None:
    assert (
        ent.scheduler_id("Counter", "K1")
        == "@counter@K1"
        == df.EntityId.get_scheduler_id(df.EntityId("Counter", "K1"))
    )
    assert ent.parse_scheduler_id("@counter@K1") == ("counter", "K1")
    assert ent.parse_scheduler_id("@counter@a@b") == ("counter", "a@b")
    for bad in ("counter@k", "@counter", "@@k", "@counter@", "plain"):
        assert ent.parse_scheduler_id(bad) is None, bad
    assert ent.is_entity_id("@x@y") and not ent.is_entity_id("x")


def test_call_request_ids_are_deterministic_and_distinct() -> None:
    a = ent.call_request_id("i1", "e1", 0)
    assert a == ent.call_request_id("i1", "e1", 0)
    assert len({a, ent.call_request_id("i1", "e1", 1), ent.call_request_id("i1", "e2", 0),
                ent.call_request_id("i2", "e1", 0)}) == 4  # fmt: skip


def test_client_operation_input_follows_the_http_api() -> None:
    # The SDK client posts json.dumps(json.dumps(value)) with Content-Type application/json.
    assert (
        ent.client_operation_input(json.dumps(json.dumps(5)).encode(), "application/json; charset=utf-8")
        == '"5"'
    )
    assert ent.client_operation_input(b'{"a": 1}', "application/json") == json.dumps({"a": 1})
    assert ent.client_operation_input(b"plain text", "text/plain") == '"plain text"'
    assert ent.client_operation_input(b"", "application/json") == "null"
    with pytest.raises(ValueError):
        ent.client_operation_input(b"{nope", "application/json")


def test_operation_input_is_json_text_of_the_action_input() -> None:
    assert ent.operation_input("5") == '"5"'
    assert ent.operation_input(None) == '"null"'
    assert json.loads(json.loads(ent.operation_input(json.dumps({"x": [1]})))) == {"x": [1]}


# --------------------------------------------------------------------------------------------
# orchestration side
# --------------------------------------------------------------------------------------------


def test_call_and_signal_take_ids_and_send_requests() -> None:
    inst = make_inst()
    reply = b.state(
        signal_entity("@counter@k1", "add", 5), b.call_entity("@counter@k1", "get"), b.activity("a", 1)
    )
    commit = episode(inst, [started_event(inst)], reply)
    events = events_of(commit)
    sent = [e for e in events if e["EventType"] == EventType.EventSent]
    assert [e["EventId"] for e in sent] == [0, 1]
    assert [e["InstanceId"] for e in sent] == ["@counter@k1", "@counter@k1"]
    assert all(e["Name"] == "op" for e in sent)
    assert [w.task_id for w in commit.new_work] == [2]  # the activity takes the next id
    requests = [request_of(m) for m in commit.new_messages]
    assert [m.instance_id for m in commit.new_messages] == ["@counter@k1", "@counter@k1"]
    assert [m.execution_id for m in commit.new_messages] == [None, None]
    assert requests == [json.loads(e["Input"]) for e in sent]
    signal, call = requests
    assert signal["signal"] is True and signal["op"] == "add" and signal["input"] == '"5"'
    assert call["signal"] is False and call["op"] == "get" and call["input"] == '"null"'
    assert call["id"] == ent.call_request_id("i1", "e1", 1)
    assert (call["parent"], call["parentExecution"]) == ("i1", "e1")
    assert Bookkeeping.loads(inst.state).next_id == 3 and inst.status == "Running"


def test_actions_seen_before_are_not_sent_again() -> None:
    inst = make_inst()
    episode(inst, [started_event(inst)], b.state(b.call_entity("@counter@k1", "get")))
    response = h.event_raised(at(1), ent.call_request_id("i1", "e1", 0), json.dumps({"result": "3"}))
    commit = episode(
        inst, [response], b.state(b.call_entity("@counter@k1", "get"), done=True, output=3), at(1)
    )
    assert commit.new_messages == [] and inst.status == "Completed"


def test_unknown_entity_and_bad_id_fail_the_orchestration() -> None:
    inst = make_inst()
    episode(inst, [started_event(inst)], b.state(b.call_entity("@ghost@k", "get")))
    out = json.loads(inst.output or "")
    assert inst.status == "Failed"
    assert "The function 'ghost' doesn't exist, is disabled, or is not an entity function." in out
    assert "The following are the known entity functions: 'counter'." in out
    inst = make_inst()
    episode(inst, [started_event(inst)], b.state(signal_entity("counter", "add", 1)))
    assert inst.status == "Failed" and "not a valid entity id" in (inst.output or "")


def test_sub_orchestrations_cannot_take_entity_ids() -> None:
    inst = make_inst()
    episode(inst, [started_event(inst)], b.state(b.sub_orchestrator("o", None, "@counter@k1")))
    assert inst.status == "Failed" and "ids starting with '@' are entity ids" in (inst.output or "")


def test_continue_as_new_still_sends_the_last_episodes_signals() -> None:
    inst = make_inst()
    reply = b.state(signal_entity("@counter@k1", "add", 1), b.continue_as_new({"n": 1}), done=True)
    commit = plan_episode(
        inst, Bookkeeping(), [started_event(inst)], Reply.parse(reply), T0, CATALOG, lambda: "e2"
    )
    targets = [m.instance_id for m in commit.new_messages]
    assert targets == ["@counter@k1", "i1"] and request_of(commit.new_messages[0])["op"] == "add"
    assert inst.execution_id == "e2" and commit.history_reset


# --------------------------------------------------------------------------------------------
# entity side
# --------------------------------------------------------------------------------------------


def test_select_batch_keeps_order_and_drops_what_is_not_a_request() -> None:
    good = [request_message(n, "add", n) for n in (3, 5, 6)]
    junk = [
        Message("@counter@k1", "terminate", "{}", T0, id=4),
        Message("@counter@k1", "event", json.dumps(h.event_raised(T0, "Other", "1")), T0, id=7),
        Message("@counter@k1", "event", "not json", T0, id=8),
        Message("@counter@k1", "event", json.dumps(h.event_raised(T0, "op", '{"no": "op"}')), T0, id=9),
    ]
    batch, dropped = ent.select_batch(sorted(good + junk, key=lambda m: m.id), limit=10)
    assert [r.message_id for r in batch] == [3, 5, 6] and dropped == [4, 7, 8, 9]
    batch, dropped = ent.select_batch(good, limit=2)
    assert [r.message_id for r in batch] == [3, 5] and dropped == []


def test_context_json_is_what_the_extension_sends() -> None:
    batch, _ = ent.select_batch([request_message(1, "add", 5, signal=True), request_message(2, "get")], 10)
    ctx = json.loads(ent.context_json("@counter@k1", ent.EntityStatus(True, "7"), batch))
    assert ctx == {
        "self": {"name": "counter", "key": "k1"},
        "exists": True,
        "state": "7",
        "batch": [
            {"name": "add", "input": '"5"', "isSignal": True, "id": "r1"},
            {"name": "get", "input": '"null"', "isSignal": False, "id": "r2"},
        ],
    }
    assert json.loads(ent.context_json("@counter@k1", ent.EntityStatus(False, "stale"), []))["state"] is None


def test_batch_updates_state_and_answers_calls_only() -> None:
    entity = ent.new_entity_instance("@counter@k1", T0, "x1")
    batch, _ = ent.select_batch(
        [request_message(1, "add", 5, signal=True), request_message(2, "get", execution="e7"),
         request_message(3, "boom")], 10,
    )  # fmt: skip
    reply = ent.BatchReply.parse(entity_reply(True, 5, (None, False), (5, False), ("boom at 5", True)))
    commit = ent.plan_entity_batch(entity, batch, reply, at(2))
    assert ent.EntityStatus.loads(entity.state) == ent.EntityStatus(True, "5")
    assert entity.updated == at(2) and entity.status == "Running"
    assert [(m.instance_id, m.execution_id) for m in commit.new_messages] == [("i1", "e7"), ("i1", "e1")]
    first, second = (json.loads(m.body) for m in commit.new_messages)
    assert first["EventType"] == EventType.EventRaised and first["Name"] == "r2"
    assert json.loads(first["Input"]) == {"result": "5"}
    assert second["Name"] == "r3" and json.loads(second["Input"]) == {
        "result": '"boom at 5"',
        "exceptionType": "Error",
    }
    assert commit.consumed == [] and commit.history_append == []


def test_deleted_entity_forgets_its_state() -> None:
    entity = ent.new_entity_instance("@counter@k1", T0, "x1")
    entity.state = ent.EntityStatus(True, "5").dumps()
    batch, _ = ent.select_batch([request_message(1, "delete", signal=True)], 10)
    ent.plan_entity_batch(entity, batch, ent.BatchReply.parse(entity_reply(False, None, (None, False))), T0)
    assert ent.EntityStatus.loads(entity.state) == ent.EntityStatus(False, None)


def test_failed_batch_keeps_state_and_fails_every_call() -> None:
    entity = ent.new_entity_instance("@counter@k1", T0, "x1")
    entity.state = ent.EntityStatus(True, "5").dumps()
    batch, _ = ent.select_batch([request_message(1, "add", 1, signal=True), request_message(2, "get")], 10)
    for reply in (ent.BatchReply.failed("TypeError: bad"), ent.BatchReply.parse("{not json")):
        commit = ent.plan_entity_batch(entity, batch, reply, T0)
        assert ent.EntityStatus.loads(entity.state) == ent.EntityStatus(True, "5")
        (response,) = commit.new_messages
        assert json.loads(json.loads(response.body)["Input"])["exceptionType"] == "Error"


def test_missing_results_become_errors() -> None:
    entity = ent.new_entity_instance("@counter@k1", T0, "x1")
    batch, _ = ent.select_batch([request_message(1, "get"), request_message(2, "get")], 10)
    commit = ent.plan_entity_batch(entity, batch, ent.BatchReply.parse(entity_reply(True, 1, (1, False))), T0)
    inputs = [json.loads(json.loads(m.body)["Input"]) for m in commit.new_messages]
    assert inputs[0] == {"result": "1"} and inputs[1]["exceptionType"] == "Error"


def test_signals_returned_by_an_entity_are_sent() -> None:
    entity = ent.new_entity_instance("@counter@k1", T0, "x1")
    batch, _ = ent.select_batch([request_message(1, "add", 1, signal=True)], 10)
    signals = [{"target": {"name": "Other", "key": "z"}, "name": "ping", "input": '"hi"'}, {"bogus": 1}]
    reply = ent.BatchReply.parse(entity_reply(True, 1, (None, False), signals=signals))
    commit = ent.plan_entity_batch(entity, batch, reply, T0, new_request_id=lambda: "sig-1")
    (message,) = commit.new_messages
    assert message.instance_id == "@other@z"
    request = request_of(message)
    assert (request["id"], request["op"], request["signal"], request["input"], request["parent"]) == (
        "sig-1", "ping", True, '"hi"', "@counter@k1",
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# the real SDK on both sides, through the planners only
# --------------------------------------------------------------------------------------------


def counter(context: df.DurableEntityContext) -> None:
    current = context.get_state(lambda: 0)
    if context.operation_name == "add":
        current += context.get_input()
    elif context.operation_name == "reset":
        current = 0
    elif context.operation_name == "get":
        context.set_result(current)
    elif context.operation_name == "echo":
        context.set_result({"input": context.get_input(), "self": [context.entity_name, context.entity_key]})
    elif context.operation_name == "boom":
        raise ValueError(f"boom at {current}")
    context.set_state(current)


def orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    eid = df.EntityId("Counter", "k1")
    context.signal_entity(eid, "add", 10)
    yield context.call_entity(eid, "add", 5)
    got = yield context.call_entity(eid, "get")
    echoed = yield context.call_entity(eid, "echo", {"a": [1, "x"]})
    try:
        yield context.call_entity(eid, "boom")
        error = None
    except Exception as exc:  # noqa: BLE001 - the SDK raises the operation's failure
        error = str(exc)
    both = yield context.task_all([context.call_entity(eid, "add", 1), context.call_entity(eid, "get")])
    after = yield context.call_activity("a", "x")
    return {"got": got, "echoed": echoed, "error": error, "both": both, "after": after}


class World:
    """Orchestration i1 and entity @counter@k1 exchanging messages through the planners."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.orch = df.Orchestrator.create(fn)
        self.entity = df.Entity.create(counter)
        self.inst = make_inst()
        self.entity_inst = ent.new_entity_instance("@counter@k1", T0, "x1")
        self.history: list[Event] = []
        self.inbox: dict[str, list[Message]] = {"i1": [], "@counter@k1": []}
        self.ids = iter(range(1, 10_000))
        self.now = T0
        self.deliver(self.inst.instance_id, [started_event(self.inst)])

    def post(self, messages: list[Message]) -> None:
        for m in messages:
            self.inbox[m.instance_id].append(
                Message(
                    m.instance_id, m.kind, m.body, m.visible_at, m.execution_id, m.timer_id, next(self.ids)
                )
            )

    def deliver(self, iid: str, events: list[Event]) -> None:
        self.now += dt.timedelta(seconds=1)
        delivered = [h.restamp(e, self.now) for e in events]
        context = {"history": self.history + [h.orchestrator_started(self.now)] + delivered, "input": None,
                   "instanceId": iid, "isReplaying": False, "parentInstanceId": None,
                   "upperSchemaVersion": 1, "upperSchemaVersionNew": 2}  # fmt: skip
        try:
            reply = Reply.parse(self.orch(json.dumps(context)))
        except Exception as exc:  # noqa: BLE001 - SDK failure protocol
            error, _, state = str(exc).partition(OUT_OF_PROC_LABEL)
            reply = Reply.parse(state, error=error)
        commit = plan_episode(
            self.inst, Bookkeeping.loads(self.inst.state), delivered, reply, self.now, CATALOG
        )
        self.history += events_of(commit)
        self.post(commit.new_messages)
        for w in commit.new_work:  # activities complete at once
            self.post([Message("i1", "event", json.dumps(h.task_completed(self.now, w.task_id, '"done"')), self.now,
                               w.execution_id)])  # fmt: skip

    def run_entity(self) -> None:
        batch, dropped = ent.select_batch(self.inbox["@counter@k1"], 100)
        assert dropped == []
        self.inbox["@counter@k1"] = []
        status = ent.EntityStatus.loads(self.entity_inst.state)
        reply = ent.BatchReply.parse(self.entity(ent.context_json("@counter@k1", status, batch)))
        self.post(ent.plan_entity_batch(self.entity_inst, batch, reply, self.now).new_messages)

    def run(self, one_event_per_episode: bool) -> Any:
        for _ in range(100):
            if self.inst.status in ("Completed", "Failed"):
                break
            if self.inbox["@counter@k1"]:
                self.run_entity()
            pending, self.inbox["i1"] = self.inbox["i1"], []
            if one_event_per_episode:
                self.inbox["i1"] = pending[1:]
                pending = pending[:1]
            if pending:
                assert all(m.execution_id in (None, "e1") for m in pending)
                self.deliver("i1", [json.loads(m.body) for m in pending])
        assert self.inst.status == "Completed", (self.inst.status, self.inst.output)
        return json.loads(self.inst.output or "null")


@pytest.mark.parametrize("one_event_per_episode", [True, False])
def test_sdk_orchestrator_and_entity_agree(one_event_per_episode: bool) -> None:
    world = World(orchestrator)
    out = world.run(one_event_per_episode)
    assert out == {
        "got": 15,
        "echoed": {"input": {"a": [1, "x"]}, "self": ["counter", "k1"]},
        "error": "boom at 15",
        "both": [None, 16],  # add sets no result
        "after": "done",
    }
    assert ent.EntityStatus.loads(world.entity_inst.state) == ent.EntityStatus(True, "16")
    sent = [e for e in world.history if e["EventType"] == EventType.EventSent]
    assert [e["EventId"] for e in sent] == list(range(7))  # signal, 4 calls, 2 calls in task_all
    assert [e["EventId"] for e in world.history if e["EventType"] == EventType.TaskScheduled] == [7]


def test_sdk_call_to_unknown_entity_fails_the_orchestration() -> None:
    def orch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        yield context.call_entity(df.EntityId("Nope", "k"), "get")

    world = World(orch)
    assert world.inst.status == "Failed"
    assert "The function 'nope' doesn't exist" in (world.inst.output or "")


# --------------------------------------------------------------------------------------------
# rewind (episode.plan_rewind / plan_renotify; in this file because the task owning it only
# adds test files for entities)
# --------------------------------------------------------------------------------------------


class Run:
    """The real SDK orchestrator through plan_episode, with the history kept as stored strings."""

    def __init__(self, fn: Callable[..., Any], catalog: Catalog = CATALOG, parent: bool = False) -> None:
        self.handle = df.Orchestrator.create(fn)
        self.inst = make_inst()
        if parent:
            self.inst.parent_instance_id, self.inst.parent_execution_id, self.inst.parent_task_id = (
                "p",
                "pe",
                4,
            )
        self.catalog = catalog
        self.history: list[str] = []
        self.now = T0
        self.last: EpisodeCommit = self.step(started_event(self.inst))

    def step(self, *events: Event) -> EpisodeCommit:
        self.now += dt.timedelta(seconds=1)
        delivered = [h.restamp(e, self.now) for e in events]
        context = {"history": [json.loads(e) for e in self.history] + [h.orchestrator_started(self.now)] + delivered,
                   "input": None, "instanceId": "i1", "isReplaying": False, "parentInstanceId": None,
                   "upperSchemaVersion": 1, "upperSchemaVersionNew": 2}  # fmt: skip
        try:
            reply = Reply.parse(self.handle(json.dumps(context)))
        except Exception as exc:  # noqa: BLE001 - SDK failure protocol
            error, _, state = str(exc).partition(OUT_OF_PROC_LABEL)
            reply = Reply.parse(state, error=error)
        bk = Bookkeeping.loads(self.inst.state)
        commit = plan_episode(self.inst, bk, delivered, reply, self.now, self.catalog)
        self.history = commit.history_append if commit.history_reset else self.history + commit.history_append
        self.last = commit
        return commit

    def rewind(
        self, covered_tasks: frozenset[int] = frozenset(), covered_timers: frozenset[int] = frozenset()
    ) -> EpisodeCommit:
        self.now += dt.timedelta(seconds=1)
        commit = plan_rewind(self.inst, self.history, "fixed it", self.now, covered_tasks, covered_timers)
        assert commit.history_reset
        self.history = commit.history_append
        return commit

    def kinds(self) -> list[str]:
        return [EventType(json.loads(e)["EventType"]).name for e in self.history]


def _fan_out_then_fail(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    first = yield context.call_activity("a", "first")
    timer = context.create_timer(context.current_utc_datetime + dt.timedelta(hours=1))
    results = yield context.task_all([*(context.call_activity("a", i) for i in range(3)), timer])
    return [first, results[:3]]


def test_rewind_redoes_the_failed_and_the_unfinished_calls_only() -> None:
    run = Run(_fan_out_then_fail)
    run.step(h.task_completed(at(1), 0, '"one"'))  # activities 1, 2, 3 and timer 4
    run.step(h.task_completed(at(2), 1, '"r0"'))
    run.step(h.task_failed(at(3), 2, "Activity function 'a' failed: boom", None))
    assert run.inst.status == "Failed"
    before = run.kinds()
    assert before[-3:] == ["TaskFailed", "ExecutionCompleted", "OrchestratorCompleted"]
    commit = run.rewind(covered_tasks=frozenset({3}))  # task 3 is still running
    assert run.kinds() == [k for k in before if k not in ("TaskFailed", "ExecutionCompleted")]
    assert (run.inst.status, run.inst.output) == ("Running", None)
    assert [(w.task_id, w.name, w.input) for w in commit.new_work] == [(2, "a", "1")]
    timer, replay = commit.new_messages  # the timer's fire was dropped when the instance failed
    assert json.loads(timer.body)["TimerId"] == 4 and timer.timer_id == 4 and timer.execution_id == "e1"
    assert timer.visible_at == T0 + dt.timedelta(seconds=2, hours=1)
    assert json.loads(replay.body)["EventType"] == EventType.GenericEvent
    assert json.loads(replay.body)["Data"] == "Rewound: fixed it" and replay.execution_id == "e1"
    # The SDK replays the rewound history (GenericEvent is ignored) and continues with the same ids.
    run.step(json.loads(replay.body))
    assert run.inst.status == "Running" and run.last.new_work == []
    run.step(h.task_completed(at(9), 2, '"r1"'))
    run.step(h.task_completed(at(9), 3, '"r2"'))
    run.step(json.loads(timer.body))
    assert run.inst.status == "Completed"
    assert json.loads(run.inst.output or "") == ["one", ["r0", "r1", "r2"]]


def test_rewind_of_a_sub_orchestration_failure_rewinds_the_child() -> None:
    def parent(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        return (yield context.call_sub_orchestrator("o", None, instance_id="kid"))

    run = Run(parent)
    run.step(h.sub_orchestration_failed(at(1), 0, "Orchestrator function 'o' failed: x", None))
    assert run.inst.status == "Failed"
    commit = run.rewind()
    rewind_child, _replay = commit.new_messages
    assert (rewind_child.instance_id, rewind_child.kind, json.loads(rewind_child.body)) == (
        "kid", "rewind", {"reason": "fixed it"},
    )  # fmt: skip
    assert run.step(h.sub_orchestration_completed(at(5), 0, '"ok"')) and run.inst.status == "Completed"


def test_failures_a_rewind_cannot_undo_are_refused() -> None:
    def unknown(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        yield context.call_activity("ghost")

    run = Run(unknown)
    assert run.inst.status == "Failed" and rewind_blocker(run.inst) is not None
    with pytest.raises(RewindRefused, match="cannot be rewound: the runtime failed it"):
        run.rewind()

    def retried(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        yield context.call_activity_with_retry("a", df.RetryOptions(1000, 1), None)

    run = Run(retried)
    run.step(h.task_failed(at(1), 0, "boom", None))  # last attempt: DTFx's immediate dummy timer 1
    assert run.inst.status == "Running"
    run.step(h.timer_fired(at(2), 1, h.fmt_time(at(1))))
    assert run.inst.status == "Failed"
    with pytest.raises(RewindRefused, match="retry options"):
        run.rewind()


def test_failures_in_user_code_are_rewindable() -> None:
    def raises(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        yield context.call_activity("a")
        raise ValueError("bug")

    run = Run(raises)
    run.step(h.task_completed(at(1), 0, "null"))
    assert run.inst.status == "Failed" and rewind_blocker(run.inst) is None
    commit = run.rewind()
    assert commit.new_work == [] and [m.kind for m in commit.new_messages] == ["event"]  # only the replay


@pytest.mark.parametrize(
    ("status", "output", "kind", "extra"),
    [
        ("Completed", '"done"', EventType.SubOrchestrationInstanceCompleted, {"Result": '"done"'}),
        ("Failed", json.dumps("Orchestrator function 'o' failed: x"), EventType.SubOrchestrationInstanceFailed,
         {"Reason": "Orchestrator function 'o' failed: x"}),
        ("Terminated", '"stop"', EventType.SubOrchestrationInstanceFailed,
         {"Reason": "Sub-orchestration 'o' was terminated: stop"}),
    ],
)  # fmt: skip
def test_renotify_reports_a_finished_child_to_its_parent(
    status: str, output: str, kind: int, extra: Event
) -> None:
    inst = make_inst(status)
    inst.output = output
    inst.parent_instance_id, inst.parent_execution_id, inst.parent_task_id = "p", "pe", 4
    (message,) = plan_renotify(inst, at(1)).new_messages
    event = json.loads(message.body)
    assert (message.instance_id, message.execution_id, event["EventType"], event["TaskScheduledId"]) == (
        "p", "pe", kind, 4,
    )  # fmt: skip
    assert {k: event[k] for k in extra} == extra
    assert plan_renotify(make_inst("Completed"), at(1)).new_messages == []  # no parent, nothing to say


def test_durable_index_keys_entities_apart_by_lowercase_name() -> None:
    def fn(name: str, trigger_type: str, trigger: dict[str, Any], durable: str | None = None) -> FunctionInfo:
        return FunctionInfo(name=name, trigger_type=trigger_type, trigger=trigger, bindings=(), user_function=print,
                            is_async=False, durable_name=durable or name, python_name=name)  # fmt: skip

    aliased = fn("counter_entity", "entityTrigger", {"name": "context", "entityName": "Counter"}, "Counter")
    plain = fn("Other", "entityTrigger", {"name": "context"})
    orch = fn("counter", "orchestrationTrigger", {"name": "context"})
    index = durable_index([aliased, plain, orch])
    assert index["@counter"] is aliased and index["@other"] is plain and index["counter"] is orch
    assert "counter_entity" not in index and "Counter" not in index
