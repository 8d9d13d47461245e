"""Pure planning of one orchestrator episode (durable-protocol.md §2.5 and §3).

Given an instance, its bookkeeping, the events delivered in this episode and the SDK's reply,
decide everything the episode changes: history to append, activities and sub-orchestrations to
schedule, timers, messages to other instances, the new status. No I/O and no clock (the caller
passes `now`), so every rule here is unit-tested without a store or a process.

Id rule: every scheduling action takes the next id in flattened action order; retry
bookkeeping (DTFx's RetryInterceptor, mirrored invisibly by the SDK) takes ids for the retry
timer and the re-scheduled task. Episodes that carry a retry-related event carry only that event
(the engine batches the rest), so host and SDK always agree on ids.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from selfhost.durable import history as h
from selfhost.durable.history import EventType, OrchestrationStatus
from selfhost.durable.store import EpisodeCommit, Instance, Message, WorkItem

HTTP_ACTIVITY = "BuiltIn::HttpActivity"
# Azure limits custom status to 16 KB of UTF-16 (the extension fails the orchestration beyond it).
CUSTOM_STATUS_LIMIT = 16 * 1024


class ActionType:
    CALL_ACTIVITY = 0
    CALL_ACTIVITY_WITH_RETRY = 1
    CALL_SUB_ORCHESTRATOR = 2
    CALL_SUB_ORCHESTRATOR_WITH_RETRY = 3
    CONTINUE_AS_NEW = 4
    CREATE_TIMER = 5
    WAIT_FOR_EXTERNAL_EVENT = 6
    CALL_ENTITY = 7
    CALL_HTTP = 8
    SIGNAL_ENTITY = 9
    WHEN_ANY = 11
    WHEN_ALL = 12


@dataclass
class Bookkeeping:
    """Per-execution engine state kept in `Instance.state` (JSON)."""

    next_id: int = 0
    seen: int = 0  # flattened actions already handled
    retry_tasks: dict[str, dict[str, Any]] = field(default_factory=dict)  # task id -> retry record
    retry_timers: dict[str, dict[str, Any]] = field(default_factory=dict)  # timer id -> {rec, final}
    timer_actions: dict[str, int] = field(default_factory=dict)  # flat action index -> timer id

    @classmethod
    def loads(cls, text: str) -> Bookkeeping:
        return cls(**json.loads(text or "{}"))

    def dumps(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"))

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id - 1


@dataclass(frozen=True)
class Reply:
    """The SDK's OrchestratorState (§2.3), or the state embedded in its failure."""

    is_done: bool
    actions: list[dict[str, Any]]  # flattened, depth-first
    output: Any = None
    has_output: bool = False
    error: str | None = None
    custom_status: Any = None
    has_custom_status: bool = False

    @classmethod
    def parse(cls, text: str, error: str | None = None) -> Reply:
        state = json.loads(text) if text else {}
        groups = state.get("actions") or []
        return cls(
            is_done=bool(state.get("isDone")) and error is None,
            actions=list(flatten(groups)),
            output=state.get("output"),
            has_output="output" in state,
            error=error if error is not None else state.get("error"),
            custom_status=state.get("customStatus"),
            has_custom_status="customStatus" in state,
        )


def flatten(groups: Iterable[Any]) -> Iterable[dict[str, Any]]:
    for item in groups:
        if isinstance(item, list):
            yield from flatten(item)
        elif item.get("actionType") in (ActionType.WHEN_ANY, ActionType.WHEN_ALL):
            yield from flatten(item.get("compoundActions") or [])
        else:
            yield item


@dataclass(frozen=True)
class Catalog:
    """Which durable names exist (for the extension's 'doesn't exist' failure)."""

    activities: frozenset[str]
    orchestrators: frozenset[str]


def is_retry_event(event: dict[str, Any], bk: Bookkeeping) -> bool:
    kind = event["EventType"]
    if kind in (EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed):
        return str(event["TaskScheduledId"]) in bk.retry_tasks
    if kind == EventType.TimerFired:
        return str(event["TimerId"]) in bk.retry_timers
    return False


class _Planner:
    def __init__(self, inst: Instance, bk: Bookkeeping, now: dt.datetime, catalog: Catalog) -> None:
        self.inst = inst
        self.bk = bk
        self.now = now
        self.catalog = catalog
        self.events: list[dict[str, Any]] = []
        self.commit = EpisodeCommit(instance=inst)

    # -- scheduling helpers ------------------------------------------------------------------

    def _timer(self, fire_at: dt.datetime) -> int:
        tid = self.bk.take_id()
        self.events.append(h.timer_created(self.now, tid, fire_at))
        fired = h.timer_fired(self.now, tid, h.fmt_time(fire_at))
        self.commit.new_messages.append(
            Message(
                instance_id=self.inst.instance_id,
                kind="event",
                body=json.dumps(fired),
                visible_at=fire_at,
                execution_id=self.inst.execution_id,
                timer_id=tid,
            )
        )
        return tid

    def _activity(self, task_id: int, name: str, input_text: str | None, kind: str = "activity") -> None:
        self.events.append(h.task_scheduled(self.now, task_id, name, input_text))
        self.commit.new_work.append(
            WorkItem(self.inst.instance_id, self.inst.execution_id, task_id, name, input_text, kind)
        )

    def _sub_orchestration(self, task_id: int, name: str, child_id: str, input_text: str | None) -> None:
        self.events.append(h.sub_orchestration_created(self.now, task_id, name, child_id, input_text))
        execution_id = uuid.uuid4().hex
        # The action's input text becomes the child's context input, a JSON string (§4.4).
        child_input = json.dumps(input_text)
        self.commit.new_instances.append(
            Instance(
                instance_id=child_id,
                name=name,
                execution_id=execution_id,
                status="Pending",
                input=child_input,
                created=self.now,
                updated=self.now,
                parent_instance_id=self.inst.instance_id,
                parent_execution_id=self.inst.execution_id,
                parent_task_id=task_id,
            )
        )
        started = h.execution_started(
            self.now,
            name=name,
            instance_id=child_id,
            execution_id=execution_id,
            input_text=child_input,
            parent={
                "Name": self.inst.name,
                "OrchestrationInstance": {
                    "InstanceId": self.inst.instance_id,
                    "ExecutionId": self.inst.execution_id,
                },
                "TaskScheduleId": task_id,
            },
        )
        self.commit.new_messages.append(
            Message(child_id, "event", json.dumps(started), self.now, execution_id=execution_id)
        )

    # -- retry bookkeeping (DTFx RetryInterceptor) --------------------------------------------

    def retry_bookkeeping(self, delivered: list[dict[str, Any]]) -> None:
        for ev in delivered:
            kind = ev["EventType"]
            if kind in (EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed):
                rec = self.bk.retry_tasks.pop(str(ev["TaskScheduledId"]), None)
                if rec is None:
                    continue
                final = rec["attempt"] >= rec["max_attempts"]
                # After the last attempt DTFx still waits on a timer firing at once (§3).
                delay = dt.timedelta(milliseconds=0 if final else rec["first_ms"])
                tid = self._timer(self.now + delay)
                self.bk.retry_timers[str(tid)] = {"rec": rec, "final": final}
            elif kind in (EventType.TaskCompleted, EventType.SubOrchestrationInstanceCompleted):
                self.bk.retry_tasks.pop(str(ev["TaskScheduledId"]), None)
            elif kind == EventType.TimerFired:
                entry = self.bk.retry_timers.pop(str(ev["TimerId"]), None)
                if entry is None:
                    self.bk.timer_actions = {
                        k: v for k, v in self.bk.timer_actions.items() if v != ev["TimerId"]
                    }
                    continue
                if entry["final"]:
                    continue
                rec = dict(entry["rec"], attempt=entry["rec"]["attempt"] + 1)
                task_id = self.bk.take_id()
                if rec["kind"] == "activity":
                    self._activity(task_id, rec["name"], rec["input"])
                else:
                    self._sub_orchestration(task_id, rec["name"], rec["instance_id"], rec["input"])
                self.bk.retry_tasks[str(task_id)] = rec

    # -- actions -----------------------------------------------------------------------------

    def schedule_actions(self, actions: list[dict[str, Any]]) -> str | None:
        """Handle the actions not seen before; return a failure message if one is invalid."""
        new = actions[self.bk.seen :]
        start = self.bk.seen
        self.bk.seen = len(actions)
        for offset, action in enumerate(new):
            kind = action.get("actionType")
            if kind in (ActionType.CALL_ACTIVITY, ActionType.CALL_ACTIVITY_WITH_RETRY):
                name = action["functionName"]
                if name not in self.catalog.activities:
                    return _unknown("activity", name, self.catalog.activities)
                task_id = self.bk.take_id()
                self._activity(task_id, name, action.get("input"))
                if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
                    self.bk.retry_tasks[str(task_id)] = _retry_record("activity", action, None)
            elif kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
                name = action["functionName"]
                if name not in self.catalog.orchestrators:
                    return _unknown("orchestrator", name, self.catalog.orchestrators)
                task_id = self.bk.take_id()
                # DTFx names a generated child "{parentExecutionId}:{taskId}": unique per execution.
                child_id = action.get("instanceId") or f"{self.inst.execution_id}:{task_id}"
                self._sub_orchestration(task_id, name, child_id, action.get("input"))
                if kind == ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY:
                    self.bk.retry_tasks[str(task_id)] = _retry_record("sub", action, child_id)
            elif kind == ActionType.CREATE_TIMER:
                fire_at = h.parse_time(action["fireAt"])
                if action.get("isCanceled"):
                    self.events.append(h.timer_created(self.now, self.bk.take_id(), fire_at))
                else:
                    self.bk.timer_actions[str(start + offset)] = self._timer(fire_at)
            elif kind == ActionType.CALL_HTTP:
                request = action.get("httpRequest") or {}
                self._activity(self.bk.take_id(), HTTP_ACTIVITY, json.dumps(request), kind="http")
            elif kind in (ActionType.CALL_ENTITY, ActionType.SIGNAL_ENTITY):
                return "Durable entities are not supported by this runtime (selfhost); see README."
            elif kind in (ActionType.CONTINUE_AS_NEW, ActionType.WAIT_FOR_EXTERNAL_EVENT):
                pass  # no id on the host side; continue-as-new is applied when the reply is done
            else:
                return f"Unsupported durable action type {kind!r}."
        return None

    def cancel_timers(self, actions: list[dict[str, Any]]) -> None:
        for index, tid in list(self.bk.timer_actions.items()):
            i = int(index)
            if i < len(actions) and actions[i].get("isCanceled"):
                self.commit.cancelled_timers.append(tid)
                del self.bk.timer_actions[index]

    # -- endings -----------------------------------------------------------------------------

    def notify_parent(self, ok: bool, result: str | None, reason: str = "", details: str | None = None) -> None:
        inst = self.inst
        if inst.parent_instance_id is None or inst.parent_task_id is None:
            return
        if ok:
            ev = h.sub_orchestration_completed(self.now, inst.parent_task_id, result)
        else:
            ev = h.sub_orchestration_failed(self.now, inst.parent_task_id, reason, details)
        self.commit.new_messages.append(
            Message(
                inst.parent_instance_id,
                "event",
                json.dumps(ev),
                self.now,
                execution_id=inst.parent_execution_id,
            )
        )

    def finish(self, status: OrchestrationStatus, output_text: str | None) -> None:
        self.events.append(h.execution_completed(self.now, status, output_text))
        self.inst.status = status.name
        self.inst.output = output_text
        self.commit.drop_inbox = True

    def fail(self, message: str) -> None:
        output = f"Orchestrator function '{self.inst.name}' failed: {message}"
        self.finish(OrchestrationStatus.Failed, json.dumps(output))
        self.notify_parent(False, None, output, None)


def _retry_record(kind: str, action: dict[str, Any], child_id: str | None) -> dict[str, Any]:
    opts = action.get("retryOptions") or {}
    return {
        "kind": kind,
        "name": action["functionName"],
        "input": action.get("input"),
        "instance_id": child_id,
        "first_ms": int(opts.get("firstRetryIntervalInMilliseconds", 0)),
        "max_attempts": int(opts.get("maxNumberOfAttempts", 1)),
        "attempt": 1,
    }


def _unknown(kind: str, name: str, known: Iterable[str]) -> str:
    names = ", ".join(f"'{n}'" for n in sorted(known))
    return (
        f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. "
        f"Additional info: The following are the known {kind} functions: {names}."
    )


def plan_episode(
    inst: Instance,
    bk: Bookkeeping,
    delivered: list[dict[str, Any]],
    reply: Reply,
    now: dt.datetime,
    catalog: Catalog,
    new_execution_id: Callable[[], str] = lambda: uuid.uuid4().hex,
) -> EpisodeCommit:
    """Plan an episode whose history gained `OrchestratorStarted(now)` + `delivered`.

    `inst` and `bk` are updated in place; the returned commit carries the whole change except
    `consumed` (the caller knows which messages it delivered).
    """
    p = _Planner(inst, bk, now, catalog)
    p.events.append(h.orchestrator_started(now))
    p.events.extend(delivered)
    if inst.status == "Pending":
        inst.status = "Running"
    inst.updated = now
    status_problem = None
    if reply.has_custom_status:
        text = json.dumps(reply.custom_status)
        size = len(text.encode("utf-16-le"))
        if size > CUSTOM_STATUS_LIMIT:
            status_problem = (
                f"The UTF-16 size of the JSON-serialized custom status ({size} bytes) must not exceed 16 KB "
                f"({CUSTOM_STATUS_LIMIT} bytes); keep custom status small and put large data elsewhere."
            )
        else:
            inst.custom_status = text

    p.retry_bookkeeping(delivered)
    problem = reply.error or status_problem or p.schedule_actions(reply.actions)
    if problem is not None:
        p.fail(problem)
    else:
        p.cancel_timers(reply.actions)
        if reply.is_done:
            can = next((a for a in reversed(reply.actions) if a.get("actionType") == ActionType.CONTINUE_AS_NEW), None)
            if can is not None:
                return _continue_as_new(p, can.get("input"), new_execution_id())
            output = json.dumps(reply.output) if reply.has_output else None
            p.finish(OrchestrationStatus.Completed, output)
            p.notify_parent(True, output)
    p.events.append(h.orchestrator_completed(now))
    inst.state = bk.dumps()
    p.commit.history_append = [json.dumps(e, separators=(",", ":")) for e in p.events]
    return p.commit


def _continue_as_new(p: _Planner, input_text: str | None, execution_id: str) -> EpisodeCommit:
    """Start a new execution: fresh history and ids; queued events carry over (§2.5 step 7)."""
    inst = p.inst
    inst.execution_id = execution_id
    input_text = json.dumps(input_text)  # as for sub-orchestrations (§4.4)
    inst.input = input_text
    inst.status = "Running"
    inst.state = Bookkeeping().dumps()
    started = h.execution_started(
        p.now, name=inst.name, instance_id=inst.instance_id, execution_id=execution_id, input_text=input_text
    )
    p.commit.history_reset = True
    p.commit.history_append = []
    # Timers and activity results of the old execution are dropped at delivery (execution id).
    p.commit.new_messages = [Message(inst.instance_id, "event", json.dumps(started), p.now, execution_id=execution_id)]
    p.commit.new_work = []
    p.commit.new_instances = []
    p.commit.cancelled_timers = []
    return p.commit


def plan_control(inst: Instance, kind: str, reason: str | None, now: dt.datetime) -> EpisodeCommit | None:
    """Terminate, suspend or resume without running user code; None when it does not apply."""
    p = _Planner(inst, Bookkeeping.loads(inst.state), now, Catalog(frozenset(), frozenset()))
    inst.updated = now
    if kind == "terminate":
        p.events += [h.orchestrator_started(now), h.execution_terminated(now, reason)]
        p.finish(OrchestrationStatus.Terminated, json.dumps(reason))
        p.notify_parent(False, None, f"Sub-orchestration '{inst.name}' was terminated: {reason}")
        p.events.append(h.orchestrator_completed(now))
    elif kind == "suspend" and inst.status in ("Running", "Pending"):
        p.events.append(h.execution_suspended(now, reason))
        inst.status = "Suspended"
    elif kind == "resume" and inst.status == "Suspended":
        p.events.append(h.execution_resumed(now, reason))
        inst.status = "Running"
    else:
        return None
    p.commit.history_append = [json.dumps(e, separators=(",", ":")) for e in p.events]
    return p.commit
