"""The pure episode planner (selfhost/durable/episode.py) against durable-protocol.md §2.5 and §3.

Most tests feed hand-built OrchestratorState JSON in the exact shapes the SDK emits
(tests/support/history_builders.py); the `SdkRun` tests at the end drive the real SDK
(`azure.durable_functions.Orchestrator`) through the planner, one delivered event per episode as
the engine does, to prove host and SDK agree on ids. Every history event and every event message
the planner produces is checked for the keys the SDK requires (§2.2).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Callable, Generator
from typing import Any

import azure.durable_functions as df
import pytest

from selfhost.durable import history as h
from selfhost.durable.episode import (
    CUSTOM_STATUS_LIMIT,
    HTTP_ACTIVITY,
    Bookkeeping,
    Catalog,
    Reply,
    flatten,
    is_retry_event,
    plan_control,
    plan_episode,
)
from selfhost.durable.history import EventType, OrchestrationStatus
from selfhost.durable.store import EpisodeCommit, Instance, Message
from tests.support import history_builders as b
from tests.support.history_builders import T0, at, started_event

pytestmark = pytest.mark.unit

Event = dict[str, Any]

CATALOG = Catalog(
    activities=frozenset({"a", "b", "flaky", "hello"}),
    orchestrators=frozenset({"o", "sub"}),
)
TS_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def assert_sdk_event(ev: Event) -> None:
    """The keys the SDK's HistoryEvent constructor and task resolution need (§2.2, pitfall 5)."""
    for key in ("EventType", "EventId", "IsPlayed", "Timestamp"):
        assert key in ev, (key, ev)
    kind = EventType(ev["EventType"])
    assert isinstance(ev["EventId"], int)
    assert ev["IsPlayed"] is False
    assert TS_RE.match(ev["Timestamp"]), ev["Timestamp"]
    required: dict[EventType, tuple[str, ...]] = {
        EventType.ExecutionStarted: ("Name", "Version", "Input", "OrchestrationInstance", "ParentInstance"),
        EventType.ExecutionCompleted: ("OrchestrationStatus", "Result"),
        EventType.ExecutionTerminated: ("Input",),
        EventType.TaskScheduled: ("Name", "Input"),
        EventType.TaskCompleted: ("TaskScheduledId", "Result"),
        EventType.TaskFailed: ("TaskScheduledId", "Reason", "Details"),
        EventType.SubOrchestrationInstanceCreated: ("Name", "InstanceId", "Input"),
        EventType.SubOrchestrationInstanceCompleted: ("TaskScheduledId", "Result"),
        EventType.SubOrchestrationInstanceFailed: ("TaskScheduledId", "Reason", "Details"),
        EventType.TimerCreated: ("FireAt",),
        EventType.TimerFired: ("TimerId", "FireAt"),
        EventType.EventRaised: ("Name", "Input"),
        EventType.ExecutionSuspended: ("Reason",),
        EventType.ExecutionResumed: ("Reason",),
    }
    for key in required.get(kind, ()):
        assert key in ev, (kind.name, key, ev)
    if kind in (EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated, EventType.TimerCreated):
        assert ev["EventId"] >= 0, ev
    else:
        assert ev["EventId"] == -1, ev
    if kind == EventType.ExecutionStarted:
        assert set(ev["OrchestrationInstance"]) == {"InstanceId", "ExecutionId"}
    if "FireAt" in ev:
        assert TS_RE.match(ev["FireAt"]), ev


def kinds(events: list[Event]) -> list[str]:
    return [EventType(e["EventType"]).name for e in events]


def make_inst(
    status: str = "Running",
    *,
    instance_id: str = "i1",
    parent: tuple[str, str, int] | None = None,
    custom_status: str | None = None,
) -> Instance:
    inst = Instance(instance_id, "o", "e1", status, None, T0, T0, custom_status=custom_status)
    if parent is not None:
        inst.parent_instance_id, inst.parent_execution_id, inst.parent_task_id = parent
    return inst


class Episodes:
    """Runs plan_episode episode after episode, reloading the bookkeeping from `Instance.state`
    each time exactly as the engine does (so JSON round-trips of the bookkeeping are exercised)."""

    def __init__(self, inst: Instance | None = None, catalog: Catalog = CATALOG) -> None:
        self.inst = inst or make_inst("Pending")
        self.catalog = catalog
        self.history: list[Event] = []

    @property
    def bk(self) -> Bookkeeping:
        return Bookkeeping.loads(self.inst.state)

    def run(
        self,
        delivered: list[Event],
        reply: str | Reply,
        now: dt.datetime = T0,
        new_execution_id: Callable[[], str] | None = None,
    ) -> tuple[EpisodeCommit, list[Event]]:
        parsed = Reply.parse(reply) if isinstance(reply, str) else reply
        extra = {} if new_execution_id is None else {"new_execution_id": new_execution_id}
        commit = plan_episode(self.inst, self.bk, delivered, parsed, now, self.catalog, **extra)
        events = [json.loads(e) for e in commit.history_append]
        for ev in events:
            assert_sdk_event(ev)
        for m in commit.new_messages:
            assert m.kind == "event"
            assert_sdk_event(json.loads(m.body))
        assert commit.instance is self.inst
        assert commit.consumed == []  # the caller fills it in
        self.history = events if commit.history_reset else self.history + events
        return commit, events

    def start(self, reply: str | Reply, now: dt.datetime = T0) -> tuple[EpisodeCommit, list[Event]]:
        return self.run([started_event(self.inst, now)], reply, now)


def body(message: Message) -> Event:
    return json.loads(message.body)  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# Reply.parse, flatten, Bookkeeping
# --------------------------------------------------------------------------------------------


def test_flatten_is_depth_first_through_groups_and_compounds() -> None:
    a, c, d, e = b.activity("a", 1), b.activity("a", 3), b.wait_event("E"), b.activity("b", 4)
    t = b.timer(at(5))
    groups = [[a, b.when_all(t, b.when_any(c, d)), b.when_all()], [e]]
    assert list(flatten(groups)) == [a, t, c, d, e]


def test_reply_parse_reads_sdk_state() -> None:
    text = b.state(b.activity("a", 1), b.when_all(b.activity("b", 2)), done=True, output={"x": [1]},
                   custom_status="step")  # fmt: skip
    reply = Reply.parse(text)
    assert reply.is_done is True
    assert [a["functionName"] for a in reply.actions] == ["a", "b"]
    assert (reply.output, reply.has_output) == ({"x": [1]}, True)
    assert (reply.custom_status, reply.has_custom_status) == ("step", True)
    assert reply.error is None


def test_reply_parse_absent_keys_and_null_output() -> None:
    reply = Reply.parse(b.state())
    assert (reply.is_done, reply.actions, reply.has_output, reply.has_custom_status) == (
        False,
        [],
        False,
        False,
    )
    # `output: null` is still "present" (the SDK omits None outputs, but a host must not crash on it)
    reply = Reply.parse(b.state(done=True, output=None))
    assert reply.has_output and reply.output is None
    assert Reply.parse("") == Reply(False, [])


def test_reply_parse_failure_payload_is_never_done() -> None:
    # What the engine gets by splitting the SDK's exception on "$OutOfProcData$" (§2.3)
    reply = Reply.parse(b.state(b.activity("a"), done=True), error="boom 41")
    assert reply.is_done is False and reply.error == "boom 41"
    assert len(reply.actions) == 1
    assert Reply.parse(b.state(error="from state")).error == "from state"


def test_bookkeeping_round_trips_and_takes_ids() -> None:
    bk = Bookkeeping()
    assert [bk.take_id(), bk.take_id()] == [0, 1]
    bk.retry_tasks["1"] = {"attempt": 1}
    bk.timer_actions["3"] = 7
    assert Bookkeeping.loads(bk.dumps()) == bk
    assert Bookkeeping.loads("") == Bookkeeping() == Bookkeeping.loads("{}")


# --------------------------------------------------------------------------------------------
# first episode, id allocation, `seen`
# --------------------------------------------------------------------------------------------


def test_first_episode_frames_history_and_starts_running() -> None:
    ep = Episodes()
    es = started_event(ep.inst)
    commit, events = ep.run([es], b.state(b.activity("hello", "Tokyo")), now=at(1))
    assert kinds(events) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "TaskScheduled",
        "OrchestratorCompleted",
    ]
    assert events[1] == es  # delivered events are appended as given (the engine restamps them)
    assert events[0]["Timestamp"] == events[-1]["Timestamp"] == h.fmt_time(at(1))
    assert ep.inst.status == "Running" and ep.inst.updated == at(1)
    assert events[2]["EventId"] == 0 and events[2]["Name"] == "hello" and events[2]["Input"] == '"Tokyo"'
    assert commit.new_work[0].task_id == 0 and commit.new_work[0].input == '"Tokyo"'
    assert not commit.drop_inbox and not commit.history_reset and ep.inst.output is None
    assert ep.inst.state == ep.bk.dumps() and ep.bk.next_id == 1 and ep.bk.seen == 1


def test_ids_follow_flattened_action_order_for_every_kind() -> None:
    fire = at(5)
    actions = b.when_all(
        b.activity("a", 1),  # id 0
        b.when_any(b.timer(fire), b.wait_event("Approval")),  # timer id 1; the event takes none
        b.sub_orchestrator("sub", {"k": 2}, instance_id="child-1"),  # id 2
        b.http("GET", "https://example.com/x"),  # id 3
        b.activity_with_retry("flaky", "s", 1000, 3),  # id 4
        b.sub_orchestrator_with_retry("sub", None, 1000, 3, instance_id="child-2"),  # id 5
    )
    ep = Episodes()
    commit, events = ep.start(b.state(actions))
    new = events[2:-1]
    assert [(k, e["EventId"]) for k, e in zip(kinds(new), new, strict=True)] == [
        ("TaskScheduled", 0),
        ("TimerCreated", 1),
        ("SubOrchestrationInstanceCreated", 2),
        ("TaskScheduled", 3),
        ("TaskScheduled", 4),
        ("SubOrchestrationInstanceCreated", 5),
    ]
    assert new[1]["FireAt"] == h.fmt_time(fire)
    assert (new[2]["Name"], new[2]["InstanceId"], new[2]["Input"]) == ("sub", "child-1", '{"k": 2}')
    assert new[3]["Name"] == HTTP_ACTIVITY == "BuiltIn::HttpActivity"
    assert json.loads(new[3]["Input"]) == b.http("GET", "https://example.com/x")["httpRequest"]
    assert (new[5]["InstanceId"], new[5]["Input"]) == ("child-2", "null")

    work = [(w.task_id, w.name, w.kind, w.instance_id, w.execution_id) for w in commit.new_work]
    assert work == [
        (0, "a", "activity", "i1", "e1"),
        (3, HTTP_ACTIVITY, "http", "i1", "e1"),
        (4, "flaky", "activity", "i1", "e1"),
    ]
    assert commit.new_work[1].input == new[3]["Input"]

    bk = ep.bk
    assert bk.next_id == 6
    assert bk.seen == 7  # a, timer, event, sub, http, flaky, sub-retry
    assert sorted(bk.retry_tasks) == ["4", "5"]
    assert bk.timer_actions == {"1": 1}  # flat index 1 -> timer id 1
    assert commit.cancelled_timers == [] and not commit.drop_inbox


def test_timer_schedules_its_fired_message_at_fire_at() -> None:
    fire = at(3600)
    commit, _ = Episodes().start(b.state(b.activity("a"), b.timer(fire)))
    (msg,) = commit.new_messages
    assert (msg.instance_id, msg.kind, msg.visible_at, msg.execution_id, msg.timer_id) == (
        "i1", "event", fire, "e1", 1,
    )  # fmt: skip
    fired = body(msg)
    assert EventType(fired["EventType"]) == EventType.TimerFired
    assert fired["TimerId"] == 1 and fired["FireAt"] == h.fmt_time(fire)


def test_sub_orchestration_creates_child_instance_and_start_message() -> None:
    ep = Episodes()
    ep.inst.instance_id = "p1"
    commit, _ = ep.start(
        b.state(b.activity("a"), b.sub_orchestrator("sub", {"k": 2}, instance_id="c1")), now=at(2)
    )
    (child,) = commit.new_instances
    assert (child.instance_id, child.name, child.status) == ("c1", "sub", "Pending")
    assert (child.parent_instance_id, child.parent_execution_id, child.parent_task_id) == ("p1", "e1", 1)
    assert child.created == child.updated == at(2)
    # the action's input text becomes the child's context input: a JSON string holding JSON text (§4.4)
    assert child.input == json.dumps('{"k": 2}')
    (msg,) = commit.new_messages
    assert (msg.instance_id, msg.execution_id, msg.visible_at, msg.timer_id) == (
        "c1",
        child.execution_id,
        at(2),
        None,
    )
    started = body(msg)
    assert EventType(started["EventType"]) == EventType.ExecutionStarted
    assert started["Name"] == "sub" and started["Input"] == child.input
    assert started["OrchestrationInstance"] == {"InstanceId": "c1", "ExecutionId": child.execution_id}
    assert started["ParentInstance"]["OrchestrationInstance"] == {"InstanceId": "p1", "ExecutionId": "e1"}
    assert started["ParentInstance"]["Name"] == "o"
    assert child.execution_id != "e1" and re.fullmatch(r"[0-9a-f]{32}", child.execution_id)


def test_sub_orchestration_without_instance_id_gets_a_generated_one() -> None:
    commit, _ = Episodes().start(b.state(b.activity("a"), b.sub_orchestrator("sub", 1)))
    (child,) = commit.new_instances
    assert child.instance_id.endswith(":1") and child.parent_task_id == 1


def test_generated_child_id_uses_parent_execution_id_like_dtfx() -> None:
    commit, _ = Episodes().start(b.state(b.activity("a"), b.sub_orchestrator("sub", 1)))
    assert commit.new_instances[0].instance_id == "e1:1"


def test_wait_for_external_event_takes_no_id() -> None:
    ep = Episodes()
    commit, events = ep.start(b.state(b.wait_event("Go")))
    assert kinds(events) == ["OrchestratorStarted", "ExecutionStarted", "OrchestratorCompleted"]
    assert (ep.bk.next_id, ep.bk.seen) == (0, 1)
    raised = h.event_raised(at(1), "Go", '"yes"')
    commit, events = ep.run([raised], b.state(b.wait_event("Go"), b.activity("a", "yes")), at(1))
    assert kinds(events) == ["OrchestratorStarted", "EventRaised", "TaskScheduled", "OrchestratorCompleted"]
    assert events[2]["EventId"] == 0 and commit.new_work[0].task_id == 0


def test_call_http_takes_one_id_and_schedules_http_work() -> None:
    ep = Episodes()
    req = b.http("POST", "https://example.com/y", content='{"a": 1}', headers={"X": "1"})
    commit, events = ep.start(b.state(req, b.activity("a")))
    (w_http, w_a) = commit.new_work
    assert (w_http.task_id, w_http.name, w_http.kind) == (0, "BuiltIn::HttpActivity", "http")
    assert json.loads(w_http.input or "") == req["httpRequest"]
    assert (w_a.task_id, w_a.kind) == (1, "activity")
    assert ep.bk.next_id == 2


def test_seen_keeps_cumulative_actions_from_being_rescheduled() -> None:
    ep = Episodes()
    a0, t1 = b.activity("a", 0), b.timer(at(10))
    ep.start(b.state(a0))
    # episode 2 re-emits a0 and adds a timer; episode 3 re-emits both and adds a WhenAll of two
    commit, events = ep.run([h.task_completed(at(1), 0, '"r"')], b.state(a0, t1), at(1))
    assert kinds(events)[2:] == ["TimerCreated", "OrchestratorCompleted"] and events[2]["EventId"] == 1
    assert commit.new_work == [] and len(commit.new_messages) == 1
    fired = h.timer_fired(at(10), 1, h.fmt_time(at(10)))
    fan = b.when_all(b.activity("b", "x"), b.activity("b", "y"))
    commit, events = ep.run([fired], b.state(a0, t1, fan), at(10))
    assert [w.task_id for w in commit.new_work] == [2, 3]
    assert [w.input for w in commit.new_work] == ['"x"', '"y"']
    # no new actions at all (a completion resolves one child of the WhenAll)
    commit, events = ep.run([h.task_completed(at(11), 3, "1")], b.state(a0, t1, fan), at(11))
    assert kinds(events) == ["OrchestratorStarted", "TaskCompleted", "OrchestratorCompleted"]
    assert (commit.new_work, commit.new_messages, commit.new_instances) == ([], [], [])
    assert (ep.bk.next_id, ep.bk.seen) == (4, 4)


def test_compound_lists_only_new_children() -> None:
    # task_all over a task scheduled earlier: the SDK lists only the not-yet-scheduled child (§2.4)
    ep = Episodes()
    a0 = b.activity("a", 0)
    ep.start(b.state(a0))
    commit, _ = ep.run([h.task_completed(at(1), 0, "0")], b.state(a0, b.when_all(b.activity("b", 1))), at(1))
    assert [(w.task_id, w.name) for w in commit.new_work] == [(1, "b")]


# --------------------------------------------------------------------------------------------
# retries (§3)
# --------------------------------------------------------------------------------------------


def failed(task_id: int, now: dt.datetime, n: int = 1) -> Event:
    return h.task_failed(
        now, task_id, f"Activity function 'flaky' failed: RuntimeError: boom {n}", "Traceback"
    )


def fired_message_event(commit: EpisodeCommit) -> tuple[Event, dt.datetime]:
    (msg,) = commit.new_messages
    assert msg.timer_id is not None
    return body(msg), msg.visible_at


RETRY = b.activity_with_retry("flaky", {"k": 1}, 1000, 3)


def test_retry_attempt_one_fails_attempt_two_succeeds() -> None:
    ep = Episodes()
    running = b.state(RETRY)
    commit, events = ep.start(running)
    assert [(w.task_id, w.name) for w in commit.new_work] == [(0, "flaky")]
    assert ep.bk.retry_tasks["0"]["attempt"] == 1

    # TaskFailed(0) -> TimerCreated(1, FireAt now+1s) and its TimerFired visible then
    fail0 = failed(0, at(2))
    assert is_retry_event(fail0, ep.bk)
    commit, events = ep.run([fail0], running, at(2))
    assert kinds(events) == ["OrchestratorStarted", "TaskFailed", "TimerCreated", "OrchestratorCompleted"]
    assert events[2]["EventId"] == 1 and events[2]["FireAt"] == h.fmt_time(at(3))
    assert commit.new_work == [] and commit.cancelled_timers == []
    fired, visible = fired_message_event(commit)
    assert visible == at(3) and fired["TimerId"] == 1 and fired["FireAt"] == h.fmt_time(at(3))
    assert commit.new_messages[0].timer_id == 1 and commit.new_messages[0].execution_id == "e1"
    assert ep.bk.retry_tasks == {} and set(ep.bk.retry_timers) == {"1"}
    assert ep.inst.status == "Running"

    # TimerFired(1) -> TaskScheduled(2) + work item with the same input
    assert is_retry_event(fired, ep.bk)
    commit, events = ep.run([fired], running, at(3))
    assert kinds(events) == ["OrchestratorStarted", "TimerFired", "TaskScheduled", "OrchestratorCompleted"]
    assert events[2]["EventId"] == 2 and events[2]["Name"] == "flaky" and events[2]["Input"] == '{"k": 1}'
    assert [(w.task_id, w.name, w.input) for w in commit.new_work] == [(2, "flaky", '{"k": 1}')]
    assert commit.new_messages == []
    assert ep.bk.retry_tasks["2"]["attempt"] == 2 and ep.bk.retry_timers == {}

    # TaskCompleted(2) -> done
    done = h.task_completed(at(4), 2, '"ok on attempt 2"')
    assert not is_retry_event(done, ep.bk)
    commit, events = ep.run([done], b.state(RETRY, done=True, output="ok on attempt 2"), at(4))
    assert ep.inst.status == "Completed" and ep.inst.output == '"ok on attempt 2"'
    assert ep.bk.retry_tasks == {}
    ids = [(k, e["EventId"] if e["EventId"] >= 0 else e.get("TaskScheduledId", e.get("TimerId")))
           for k, e in zip(kinds(ep.history), ep.history, strict=True)
           if k not in ("OrchestratorStarted", "OrchestratorCompleted", "ExecutionStarted")]  # fmt: skip
    assert ids == [
        ("TaskScheduled", 0), ("TaskFailed", 0), ("TimerCreated", 1), ("TimerFired", 1),
        ("TaskScheduled", 2), ("TaskCompleted", 2), ("ExecutionCompleted", None),
    ]  # fmt: skip


def test_retry_all_three_attempts_fail() -> None:
    ep = Episodes()
    running = b.state(RETRY)
    ep.start(running)
    now = at(0)
    task, timer_ids, task_ids = 0, [], [0]
    for attempt in (1, 2, 3):
        now += dt.timedelta(seconds=7)
        commit, events = ep.run([failed(task, now, attempt)], running, now)
        assert kinds(events)[2] == "TimerCreated"
        fired, visible = fired_message_event(commit)
        timer_ids.append(fired["TimerId"])
        if attempt < 3:
            assert visible == now + dt.timedelta(seconds=1)  # constant interval (backoff 1)
        else:
            assert visible == now  # DTFx's dummy timer after the last attempt fires at once
            assert events[2]["FireAt"] == h.fmt_time(now)
        now = visible
        assert is_retry_event(fired, ep.bk)
        commit, events = ep.run([fired], running, now)
        if attempt < 3:
            (work,) = commit.new_work
            task = work.task_id
            task_ids.append(task)
            assert kinds(events) == [
                "OrchestratorStarted",
                "TimerFired",
                "TaskScheduled",
                "OrchestratorCompleted",
            ]
        else:
            # the failure now surfaces in user code; nothing is rescheduled
            assert commit.new_work == [] and commit.new_messages == []
            assert kinds(events) == ["OrchestratorStarted", "TimerFired", "OrchestratorCompleted"]
    assert task_ids == [0, 2, 4] and timer_ids == [1, 3, 5]
    bk = ep.bk
    assert (bk.retry_tasks, bk.retry_timers, bk.next_id) == ({}, {}, 6)
    # user code may go on after catching: its next action takes the next id
    commit, _ = ep.run([], b.state(RETRY, b.activity("a", "after")), now)
    assert [w.task_id for w in commit.new_work] == [6]


def test_retry_with_a_single_attempt_goes_straight_to_the_dummy_timer() -> None:
    ep = Episodes()
    once = b.state(b.activity_with_retry("flaky", 1, 5000, 1))
    ep.start(once)
    commit, _ = ep.run([failed(0, at(1))], once, at(1))
    fired, visible = fired_message_event(commit)
    assert visible == at(1)
    commit, _ = ep.run([fired], once, at(1))
    assert commit.new_work == [] and ep.bk.next_id == 2


def test_retry_delay_is_measured_from_the_failure_episode() -> None:
    ep = Episodes()
    slow = b.state(b.activity_with_retry("flaky", 1, 2500, 2))
    ep.start(slow)
    commit, _ = ep.run([failed(0, at(100))], slow, at(100))
    assert fired_message_event(commit)[1] == at(102.5)


def test_non_retry_events_are_not_retry_events() -> None:
    ep = Episodes()
    ep.start(b.state(b.activity("a"), b.timer(at(9))))
    bk = ep.bk
    assert not is_retry_event(failed(0, at(1)), bk)
    assert not is_retry_event(h.timer_fired(at(9), 1, h.fmt_time(at(9))), bk)
    assert not is_retry_event(h.task_completed(at(1), 0, "1"), bk)
    assert not is_retry_event(h.event_raised(at(1), "x", None), bk)
    # a plain TaskFailed is handed to user code; nothing is scheduled for it
    commit, events = ep.run([failed(0, at(1))], b.state(b.activity("a"), b.timer(at(9))), at(1))
    assert (commit.new_work, commit.new_messages) == ([], [])


def test_sub_orchestration_retry_recreates_the_same_child_id() -> None:
    ep = Episodes()
    ep.inst.instance_id = "p1"
    running = b.state(b.sub_orchestrator_with_retry("sub", {"n": 1}, 1000, 2, instance_id="kid"))
    commit, _ = ep.start(running)
    (first,) = commit.new_instances
    assert (first.instance_id, first.parent_task_id) == ("kid", 0)

    sub_failed = h.sub_orchestration_failed(at(1), 0, "Orchestrator function 'sub' failed: x", None)
    assert is_retry_event(sub_failed, ep.bk)
    commit, events = ep.run([sub_failed], running, at(1))
    assert kinds(events)[1:3] == ["SubOrchestrationInstanceFailed", "TimerCreated"]
    fired, visible = fired_message_event(commit)
    assert visible == at(2) and fired["TimerId"] == 1

    commit, events = ep.run([fired], running, at(2))
    assert kinds(events)[1:3] == ["TimerFired", "SubOrchestrationInstanceCreated"]
    assert events[2]["EventId"] == 2 and events[2]["InstanceId"] == "kid"
    (again,) = commit.new_instances
    assert again.instance_id == "kid" and again.parent_task_id == 2 and again.input == first.input
    assert again.execution_id != first.execution_id
    (msg,) = commit.new_messages
    assert msg.instance_id == "kid" and msg.execution_id == again.execution_id
    assert body(msg)["ParentInstance"]["TaskScheduleId"] == 2
    assert commit.new_work == []

    # success of the re-created child clears the retry record
    done = h.sub_orchestration_completed(at(3), 2, '"fine"')
    ep.run([done], b.state(b.sub_orchestrator_with_retry("sub", {"n": 1}, 1000, 2, "kid"), done=True, output="fine"),
           at(3))  # fmt: skip
    assert ep.bk.retry_tasks == {} and ep.inst.status == "Completed"


# --------------------------------------------------------------------------------------------
# timers: cancellation
# --------------------------------------------------------------------------------------------


def test_cancelled_timer_is_dropped_once() -> None:
    ep = Episodes()
    t, ev = b.timer(at(30)), b.wait_event("Approval")
    ep.start(b.state(b.when_any(t, ev)))
    assert ep.bk.timer_actions == {"0": 0}
    raised = h.event_raised(at(1), "Approval", '"yes"')
    cancelled = b.state(b.when_any(b.timer(at(30), canceled=True), ev), b.activity("a", "yes"))
    commit, _ = ep.run([raised], cancelled, at(1))
    assert commit.cancelled_timers == [0]
    assert [w.task_id for w in commit.new_work] == [1]
    assert ep.bk.timer_actions == {}
    commit, _ = ep.run([h.task_completed(at(2), 1, '"r"')], cancelled, at(2))
    assert commit.cancelled_timers == []


def test_fired_timer_is_forgotten_and_never_cancelled() -> None:
    ep = Episodes()
    t, ev = b.timer(at(30)), b.wait_event("Approval")
    ep.start(b.state(b.when_any(t, ev)))
    fired = h.timer_fired(at(30), 0, h.fmt_time(at(30)))
    assert not is_retry_event(fired, ep.bk)
    commit, _ = ep.run([fired], b.state(b.when_any(b.timer(at(30), canceled=True), ev)), at(30))
    assert ep.bk.timer_actions == {} and commit.cancelled_timers == []


def test_timer_cancelled_before_first_seen_takes_an_id_but_never_fires() -> None:
    ep = Episodes()
    commit, events = ep.start(b.state(b.timer(at(30), canceled=True), b.activity("a")))
    assert kinds(events)[2:4] == ["TimerCreated", "TaskScheduled"]
    assert (events[2]["EventId"], events[3]["EventId"]) == (0, 1)
    assert commit.new_messages == [] and ep.bk.timer_actions == {}


# --------------------------------------------------------------------------------------------
# endings: continue-as-new, completion, failure
# --------------------------------------------------------------------------------------------


def test_continue_as_new_starts_a_fresh_execution() -> None:
    ep = Episodes()
    a0 = b.activity("a", 0)
    ep.start(b.state(a0, b.timer(at(50))))
    assert ep.bk.next_id == 2
    can = b.state(a0, b.timer(at(50)), b.activity("b", 9), b.continue_as_new({"n": 2}), done=True)
    commit, events = ep.run([h.task_completed(at(1), 0, "0")], can, at(1), new_execution_id=lambda: "e2")
    inst = ep.inst
    assert commit.history_reset is True and commit.history_append == [] and events == []
    assert (inst.execution_id, inst.status, inst.output) == ("e2", "Running", None)
    assert inst.input == json.dumps('{"n": 2}')  # input = json.dumps(action input)
    assert inst.state == Bookkeeping().dumps()
    # everything the finishing episode scheduled is discarded; only the new ExecutionStarted is sent
    assert (commit.new_work, commit.new_instances, commit.cancelled_timers) == ([], [], [])
    assert commit.drop_inbox is False  # queued events carry over to the new execution
    (msg,) = commit.new_messages
    assert (msg.instance_id, msg.kind, msg.execution_id, msg.visible_at, msg.timer_id) == (
        "i1",
        "event",
        "e2",
        at(1),
        None,
    )
    started = body(msg)
    assert EventType(started["EventType"]) == EventType.ExecutionStarted
    assert started["Input"] == inst.input and started["Name"] == "o"
    assert started["OrchestrationInstance"] == {"InstanceId": "i1", "ExecutionId": "e2"}

    # the new execution allocates ids from 0 again
    commit, events = ep.start(b.state(b.activity("a", 1)), at(2))
    assert kinds(events) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "TaskScheduled",
        "OrchestratorCompleted",
    ]
    assert events[2]["EventId"] == 0 and commit.new_work[0].execution_id == "e2"


def test_continue_as_new_default_execution_id_is_fresh() -> None:
    ep = Episodes()
    ep.start(b.state(b.continue_as_new(None), done=True))
    assert ep.inst.execution_id != "e1" and re.fullmatch(r"[0-9a-f]{32}", ep.inst.execution_id)
    assert ep.inst.input == json.dumps("null")


def test_completion_records_output_and_drops_inbox() -> None:
    ep = Episodes()
    ep.start(b.state(b.activity("a")))
    commit, events = ep.run([h.task_completed(at(1), 0, '"x"')], b.state(b.activity("a"), done=True, output=["x", 1]),
                            at(1))  # fmt: skip
    assert kinds(events) == [
        "OrchestratorStarted",
        "TaskCompleted",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    assert events[2]["OrchestrationStatus"] == int(OrchestrationStatus.Completed) == 1
    assert json.loads(events[2]["Result"]) == ["x", 1]
    assert ep.inst.status == "Completed" and json.loads(ep.inst.output or "") == ["x", 1]
    assert commit.drop_inbox is True and commit.new_messages == []  # no parent
    assert ep.inst.updated == at(1)


@pytest.mark.parametrize(("output", "stored"), [(0, "0"), ("", '""'), (None, "null"), ({}, "{}")])
def test_completion_keeps_falsy_outputs(output: Any, stored: str) -> None:
    ep = Episodes()
    ep.start(b.state(done=True, output=output))
    assert ep.inst.status == "Completed" and ep.inst.output == stored


def test_completion_without_output_key_has_no_output() -> None:
    ep = Episodes()
    _, events = ep.start(b.state(done=True))
    assert ep.inst.output is None and events[2]["Result"] is None


def test_non_generator_orchestrator_completes_in_first_episode() -> None:
    ep = Episodes()
    _, events = ep.start(json.dumps({"isDone": True, "schemaVersion": 2, "actions": [[]], "output": 42}))
    assert kinds(events) == [
        "OrchestratorStarted",
        "ExecutionStarted",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    assert ep.inst.status == "Completed" and ep.inst.output == "42"


def test_completion_notifies_parent_execution_and_task() -> None:
    ep = Episodes(make_inst("Pending", instance_id="kid", parent=("p1", "pe7", 3)))
    commit, _ = ep.start(b.state(done=True, output={"r": 1}), at(5))
    (msg,) = commit.new_messages
    assert (msg.instance_id, msg.kind, msg.execution_id, msg.visible_at) == ("p1", "event", "pe7", at(5))
    ev = body(msg)
    assert EventType(ev["EventType"]) == EventType.SubOrchestrationInstanceCompleted
    assert ev["TaskScheduledId"] == 3 and json.loads(ev["Result"]) == {"r": 1}


def test_orchestrator_error_fails_instance_and_schedules_nothing() -> None:
    ep = Episodes()
    ep.start(b.state(b.activity("a")))
    # the SDK's failure payload may carry new actions; none of them is scheduled
    reply = Reply.parse(b.state(b.activity("a"), b.activity("b"), b.timer(at(9))), error="boom 41")
    commit, events = ep.run([h.task_completed(at(1), 0, "1")], reply, at(1))
    msg = "Orchestrator function 'o' failed: boom 41"
    assert kinds(events) == [
        "OrchestratorStarted",
        "TaskCompleted",
        "ExecutionCompleted",
        "OrchestratorCompleted",
    ]
    assert events[2]["OrchestrationStatus"] == int(OrchestrationStatus.Failed) == 3
    assert json.loads(events[2]["Result"]) == msg
    assert ep.inst.status == "Failed" and json.loads(ep.inst.output or "") == msg
    assert (commit.new_work, commit.new_messages, commit.new_instances) == ([], [], [])
    assert commit.drop_inbox is True


def test_failure_notifies_parent_with_sub_orchestration_failed() -> None:
    ep = Episodes(make_inst("Running", instance_id="kid", parent=("p1", "pe7", 4)))
    commit, _ = ep.run([h.task_completed(at(1), 0, "1")], Reply.parse(b.state(), error="bad"), at(1))
    (msg,) = commit.new_messages
    assert (msg.instance_id, msg.execution_id) == ("p1", "pe7")
    ev = body(msg)
    assert EventType(ev["EventType"]) == EventType.SubOrchestrationInstanceFailed
    assert ev["TaskScheduledId"] == 4 and ev["Reason"] == "Orchestrator function 'o' failed: bad"


def test_unknown_activity_fails_with_the_extension_message() -> None:
    ep = Episodes()
    ep.start(b.state(b.activity("no_such")))
    expected = (
        "Orchestrator function 'o' failed: The function 'no_such' doesn't exist, is disabled, or is not an "
        "activity function. Additional info: The following are the known activity functions: "
        "'a', 'b', 'flaky', 'hello'."
    )
    assert ep.inst.status == "Failed" and json.loads(ep.inst.output or "") == expected


def test_unknown_retry_activity_and_sub_orchestrator_fail_too() -> None:
    ep = Episodes()
    ep.start(b.state(b.activity_with_retry("nope", 1, 100, 2)))
    assert ep.inst.status == "Failed" and "'nope' doesn't exist" in (ep.inst.output or "")
    ep = Episodes()
    ep.start(b.state(b.sub_orchestrator("ghost")))
    out = json.loads(ep.inst.output or "")
    assert ep.inst.status == "Failed"
    assert "The function 'ghost' doesn't exist, is disabled, or is not an orchestrator function." in out
    assert "The following are the known orchestrator functions: 'o', 'sub'." in out


def test_entities_and_unknown_action_types_fail_clearly() -> None:
    ep = Episodes()
    ep.start(b.state(b.call_entity("@counter@k1", "add", 5)))
    assert (
        ep.inst.status == "Failed"
        and "is not an entity function. Additional info: The app has no entity functions."
        in (ep.inst.output or "")
    )
    ep = Episodes()
    ep.start(b.state({"actionType": 99}))
    assert ep.inst.status == "Failed" and "Unsupported durable action type 99" in (ep.inst.output or "")


# --------------------------------------------------------------------------------------------
# custom status
# --------------------------------------------------------------------------------------------


def test_custom_status_stored_and_kept_when_absent() -> None:
    ep = Episodes(make_inst("Pending", custom_status='"old"'))
    ep.start(b.state(b.activity("a")))
    assert ep.inst.custom_status == '"old"'
    ep.run([h.task_completed(at(1), 0, "1")], b.state(b.activity("a"), custom_status={"step": 2}), at(1))
    assert json.loads(ep.inst.custom_status or "") == {"step": 2}
    ep.run([h.event_raised(at(2), "x", None)], b.state(b.activity("a")), at(2))
    assert json.loads(ep.inst.custom_status or "") == {"step": 2}


def test_custom_status_over_16kb_fails_and_keeps_previous() -> None:
    assert CUSTOM_STATUS_LIMIT == 16 * 1024
    # json.dumps adds 2 quotes; UTF-16 is 2 bytes per ASCII char: 8190 chars -> exactly 16384 bytes
    ok = Episodes()
    ok.start(b.state(b.activity("a"), custom_status="x" * 8190))
    assert ok.inst.status == "Running" and len(ok.inst.custom_status or "") == 8192

    ep = Episodes(make_inst("Pending", custom_status='"prev"'))
    commit, _ = ep.start(b.state(b.activity("a"), custom_status="x" * 8191))
    assert ep.inst.status == "Failed" and ep.inst.custom_status == '"prev"'
    out = json.loads(ep.inst.output or "")
    assert out.startswith("Orchestrator function 'o' failed: ") and "must not exceed 16 KB" in out
    assert "16386 bytes" in out
    assert commit.new_work == []


def test_custom_status_counts_utf16_code_units() -> None:
    # "😀" is one code point, two UTF-16 code units; json.dumps escapes it as \ud83d\ude00 (12 ASCII chars)
    ep = Episodes()
    ep.start(b.state(custom_status="😀" * 700))  # 700*12 + 2 = 8402 chars -> 16804 bytes
    assert ep.inst.status == "Failed"


# --------------------------------------------------------------------------------------------
# plan_control
# --------------------------------------------------------------------------------------------


def control_events(commit: EpisodeCommit) -> list[Event]:
    events = [json.loads(e) for e in commit.history_append]
    for ev in events:
        assert_sdk_event(ev)
    return events


def test_terminate_writes_terminal_history() -> None:
    inst = make_inst("Running")
    commit = plan_control(inst, "terminate", "enough", at(9))
    assert commit is not None
    events = control_events(commit)
    assert kinds(events) == [
        "OrchestratorStarted", "ExecutionTerminated", "ExecutionCompleted", "OrchestratorCompleted",
    ]  # fmt: skip
    assert events[1]["Input"] == "enough"
    assert events[2]["OrchestrationStatus"] == int(OrchestrationStatus.Terminated) == 5
    assert events[2]["Result"] == '"enough"'
    assert inst.status == "Terminated" and inst.output == '"enough"' and inst.updated == at(9)
    assert commit.drop_inbox is True and commit.new_messages == [] and commit.new_work == []


def test_terminate_suspended_instance_and_notify_parent() -> None:
    inst = make_inst("Suspended", instance_id="kid", parent=("p1", "pe", 2))
    commit = plan_control(inst, "terminate", None, at(1))
    assert commit is not None and inst.status == "Terminated" and inst.output == "null"
    (msg,) = commit.new_messages
    ev = body(msg)
    assert (msg.instance_id, msg.execution_id) == ("p1", "pe")
    assert (
        EventType(ev["EventType"]) == EventType.SubOrchestrationInstanceFailed and ev["TaskScheduledId"] == 2
    )
    assert "terminated" in ev["Reason"]
    assert_sdk_event(ev)


@pytest.mark.parametrize("status", ["Running", "Pending"])
def test_suspend_and_resume(status: str) -> None:
    inst = make_inst(status)
    commit = plan_control(inst, "suspend", "pause", at(1))
    assert commit is not None and inst.status == "Suspended"
    (ev,) = control_events(commit)
    assert EventType(ev["EventType"]) == EventType.ExecutionSuspended and ev["Reason"] == "pause"
    assert not commit.drop_inbox and commit.new_messages == []
    commit = plan_control(inst, "resume", "go", at(2))
    assert commit is not None and inst.status == "Running" and inst.updated == at(2)
    (ev,) = control_events(commit)
    assert EventType(ev["EventType"]) == EventType.ExecutionResumed and ev["Reason"] == "go"


@pytest.mark.parametrize(
    ("status", "kind"),
    [("Suspended", "suspend"), ("Running", "resume"), ("Pending", "resume"), ("Running", "rewind")],
)
def test_control_that_does_not_apply_returns_none(status: str, kind: str) -> None:
    inst = make_inst(status)
    assert plan_control(inst, kind, "r", at(1)) is None
    assert inst.status == status


# --------------------------------------------------------------------------------------------
# the real SDK through the planner: host and SDK agree on every id
# --------------------------------------------------------------------------------------------

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
Orchestrator = Callable[[df.DurableOrchestrationContext], Generator[Any, Any, Any]]


class SdkRun:
    """A minimal engine without a store: one delivered event per episode, work/timers by hand."""

    def __init__(self, fn: Orchestrator, input_value: Any = None, instance_id: str = "i1") -> None:
        self.handle = df.Orchestrator.create(fn)
        # as the engine stores a start from the SDK client: a JSON string holding JSON text (§4.4)
        text = None if input_value is None else json.dumps(json.dumps(input_value))
        inst = Instance(instance_id, "o", "e1", "Pending", text, T0, T0)
        self.ep = Episodes(inst)
        self.pending: Message = Message(instance_id, "event", json.dumps(started_event(inst)), T0, "e1")

    @property
    def inst(self) -> Instance:
        return self.ep.inst

    def step(self, event: Event, now: dt.datetime) -> EpisodeCommit:
        delivered = [h.restamp(event, now)]
        context = {
            "history": self.ep.history + [h.orchestrator_started(now)] + delivered,
            "input": None if self.inst.input is None else json.loads(self.inst.input),
            "instanceId": self.inst.instance_id,
            "isReplaying": False,
            "parentInstanceId": None,
            "upperSchemaVersion": 1,
            "upperSchemaVersionNew": 2,
        }
        try:
            reply = Reply.parse(self.handle(json.dumps(context)))
        except Exception as exc:  # noqa: BLE001 - the SDK reports orchestrator failures by raising
            error, _, state = str(exc).partition(OUT_OF_PROC_LABEL)
            reply = Reply.parse(state, error=error)
        commit, _ = self.ep.run(delivered, reply, now)
        return commit

    def start(self) -> EpisodeCommit:
        return self.step(json.loads(self.pending.body), T0)

    def output(self) -> Any:
        assert self.inst.status == "Completed", (self.inst.status, self.inst.output)
        return json.loads(self.inst.output or "null")


def _retry_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
    try:
        result = yield context.call_activity_with_retry("flaky", df.RetryOptions(1000, 3), "x")
    except Exception as exc:  # noqa: BLE001 - user code catching the surfaced failure
        return f"caught: {exc}"
    after = yield context.call_activity("a", "after")
    return [result, after]


def test_sdk_retry_exhaustion_surfaces_after_dummy_timer() -> None:
    run = SdkRun(_retry_orchestrator)
    commit = run.start()
    now = T0
    work_ids, timer_ids = [], []
    for attempt in (1, 2, 3):
        (work,) = commit.new_work
        work_ids.append(work.task_id)
        now += dt.timedelta(seconds=1)
        commit = run.step(failed(work.task_id, now, attempt), now)
        assert run.inst.status == "Running"
        fired, now = fired_message_event(commit)
        timer_ids.append(fired["TimerId"])
        commit = run.step(fired, now)
    assert work_ids == [0, 2, 4] and timer_ids == [1, 3, 5]
    out = run.output()
    assert out.startswith("caught: ") and "boom 3" in out


def test_sdk_retry_succeeds_on_second_attempt_and_next_id_agrees() -> None:
    run = SdkRun(_retry_orchestrator)
    commit = run.start()
    commit = run.step(failed(0, at(1)), at(1))
    fired, visible = fired_message_event(commit)
    commit = run.step(fired, visible)
    (work,) = commit.new_work
    assert work.task_id == 2
    commit = run.step(h.task_completed(at(3), 2, '"ok on attempt 2"'), at(3))
    (work,) = commit.new_work
    assert (work.task_id, work.name) == (3, "a")
    run.step(h.task_completed(at(4), 3, '"A"'), at(4))
    assert run.output() == ["ok on attempt 2", "A"]


def test_sdk_sub_orchestration_retry_reuses_child_id() -> None:
    def parent(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        r = yield context.call_sub_orchestrator_with_retry("sub", df.RetryOptions(500, 2), {"n": 1}, "kid")
        return r

    run = SdkRun(parent, instance_id="p1")
    commit = run.start()
    assert [c.instance_id for c in commit.new_instances] == ["kid"]
    commit = run.step(
        h.sub_orchestration_failed(at(1), 0, "Orchestrator function 'sub' failed: x", None), at(1)
    )
    fired, visible = fired_message_event(commit)
    commit = run.step(fired, visible)
    (child,) = commit.new_instances
    assert (child.instance_id, child.parent_task_id) == ("kid", 2)
    run.step(h.sub_orchestration_completed(at(3), 2, '"sub done"'), at(3))
    assert run.output() == "sub done"


def test_sdk_mixed_fan_out_ids_agree() -> None:
    def orch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        tasks = [
            context.call_activity("a", 1),
            context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=5)),
            context.call_sub_orchestrator("sub", 2),
            context.call_http("GET", "https://example.com/x"),
            context.call_activity("b", 3),
        ]
        results = yield context.task_all(tasks)
        return [results[0], results[2], results[3]["statusCode"], results[4]]  # raw dict inside task_all

    run = SdkRun(orch)
    commit = run.start()
    assert [(w.task_id, w.name) for w in commit.new_work] == [(0, "a"), (3, HTTP_ACTIVITY), (4, "b")]
    assert [c.parent_task_id for c in commit.new_instances] == [2]
    (timer_msg,) = commit.new_messages[:1]
    assert timer_msg.timer_id == 1
    # deliver completions in reverse order, one per episode
    http_result = json.dumps({"statusCode": 204, "headers": {}, "content": ""})
    run.step(h.task_completed(at(1), 4, '"B"'), at(1))
    run.step(h.task_completed(at(2), 3, http_result), at(2))
    run.step(h.sub_orchestration_completed(at(3), 2, '"S"'), at(3))
    run.step(body(timer_msg), at(5))
    assert run.inst.status == "Running"
    run.step(h.task_completed(at(6), 0, '"A"'), at(6))
    assert run.output() == ["A", "S", 204, "B"]


def test_sdk_task_any_event_wins_and_timer_is_cancelled() -> None:
    def orch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        timeout = context.create_timer(context.current_utc_datetime + dt.timedelta(seconds=30))
        event = context.wait_for_external_event("Approval")
        winner = yield context.task_any([event, timeout])
        if winner == event:
            timeout.cancel()
            r = yield context.call_activity("a", event.result)
            return r
        return "timeout"

    run = SdkRun(orch)
    commit = run.start()
    (timer_msg,) = commit.new_messages
    assert timer_msg.timer_id == 0 and timer_msg.visible_at == at(30)
    commit = run.step(h.event_raised(at(1), "Approval", '"yes"'), at(1))
    assert commit.cancelled_timers == [0]
    (work,) = commit.new_work
    assert (work.task_id, work.input) == (1, '"yes"')
    run.step(h.task_completed(at(2), 1, '"approved"'), at(2))
    assert run.output() == "approved"

    late = SdkRun(orch)
    late.start()
    late.step(h.timer_fired(at(30), 0, h.fmt_time(at(30))), at(30))
    assert late.output() == "timeout"


def test_sdk_continue_as_new_round_trips_input() -> None:
    def counter(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        n = context.get_input()
        if n < 2:
            yield context.call_activity("a", n)
            context.continue_as_new(n + 1)
            return None
        return n

    run = SdkRun(counter, 0)
    commit = run.start()
    for n in (0, 1):
        (work,) = commit.new_work
        assert (work.task_id, work.input) == (0, str(n))
        commit = run.step(h.task_completed(at(n + 1), 0, "null"), at(n + 1))
        assert commit.history_reset
        (msg,) = commit.new_messages
        commit = run.step(body(msg), at(n + 1))
    assert run.output() == 2


def test_sdk_orchestrator_exception_fails_instance() -> None:
    def orch(context: df.DurableOrchestrationContext) -> Generator[Any, Any, Any]:
        yield context.call_activity("a", "before")
        raise ValueError("boom in orchestrator")

    run = SdkRun(orch)
    run.start()
    run.step(h.task_completed(at(1), 0, '"x"'), at(1))
    assert run.inst.status == "Failed"
    assert json.loads(run.inst.output or "").startswith(
        "Orchestrator function 'o' failed: boom in orchestrator"
    )
