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

from selfhost.durable import entities as ent
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
    # Set when the execution failed in a way a rewind cannot undo (see plan_rewind).
    rewind_blocker: str | None = None

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
    entities: frozenset[str] = frozenset()  # lowercase entity names


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
        self.final_retry_fired = False  # a call with retry options failed for good in this episode

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

    def _entity_message(self, action: dict[str, Any], *, signal: bool) -> str | None:
        """CallEntity/SignalEntity: one id, an EventSent, a request to the entity (entities.py)."""
        target = str(action.get("instanceId") or "")
        parsed = ent.parse_scheduler_id(target)
        if parsed is None:
            return f"'{target}' is not a valid entity id (expected '@name@key')."
        if parsed[0] not in self.catalog.entities:
            return unknown_function("entity", parsed[0], self.catalog.entities)
        task_id = self.bk.take_id()
        request = ent.request_message(
            request_id=ent.call_request_id(self.inst.instance_id, self.inst.execution_id, task_id),
            operation=str(action.get("operation") or ""),
            signal=signal,
            input_text=ent.operation_input(action.get("input")),
            now=self.now,
            parent_instance_id=self.inst.instance_id,
            parent_execution_id=self.inst.execution_id,
        )
        text = json.dumps(request)
        self.events.append(h.event_sent(self.now, task_id, target, ent.OPERATION_EVENT, text))
        self.commit.new_messages.append(ent.request_to(target, request, self.now))
        return None

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
                    self.final_retry_fired = True
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
                    return unknown_function("activity", name, self.catalog.activities)
                task_id = self.bk.take_id()
                self._activity(task_id, name, action.get("input"))
                if kind == ActionType.CALL_ACTIVITY_WITH_RETRY:
                    self.bk.retry_tasks[str(task_id)] = _retry_record("activity", action, None)
            elif kind in (ActionType.CALL_SUB_ORCHESTRATOR, ActionType.CALL_SUB_ORCHESTRATOR_WITH_RETRY):
                name = action["functionName"]
                if name not in self.catalog.orchestrators:
                    return unknown_function("orchestrator", name, self.catalog.orchestrators)
                task_id = self.bk.take_id()
                # DTFx names a generated child "{parentExecutionId}:{taskId}": unique per execution.
                child_id = action.get("instanceId") or f"{self.inst.execution_id}:{task_id}"
                if ent.is_entity_id(child_id):
                    return f"Orchestration instance id '{child_id}' is invalid: ids starting with '@' are entity ids."
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
                problem = self._entity_message(action, signal=kind == ActionType.SIGNAL_ENTITY)
                if problem is not None:
                    return problem
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

    def committed(self) -> EpisodeCommit:
        """The commit, with this episode's events as its history_append."""
        self.commit.history_append = [json.dumps(e, separators=(",", ":")) for e in self.events]
        return self.commit

    def notify_parent(
        self, ok: bool, result: str | None, reason: str = "", details: str | None = None
    ) -> None:
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


def unknown_function(kind: str, name: str, known: Iterable[str]) -> str:
    """The extension's failure text for a call to a function that does not exist."""
    names = ", ".join(f"'{n}'" for n in sorted(known))
    info = (
        f"The following are the known {kind} functions: {names}."
        if names
        else f"The app has no {kind} functions."
    )
    return f"The function '{name}' doesn't exist, is disabled, or is not an {kind} function. Additional info: {info}"


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
        if reply.error is None:
            bk.rewind_blocker = f"the runtime failed it before running its actions: {problem}"
        elif p.final_retry_fired:
            bk.rewind_blocker = "it failed because a call with retry options failed on its last attempt"
        p.fail(problem)
    else:
        p.cancel_timers(reply.actions)
        if reply.is_done:
            can = next(
                (a for a in reversed(reply.actions) if a.get("actionType") == ActionType.CONTINUE_AS_NEW),
                None,
            )
            if can is not None:
                return _continue_as_new(p, can.get("input"), new_execution_id())
            output = json.dumps(reply.output) if reply.has_output else None
            p.finish(OrchestrationStatus.Completed, output)
            p.notify_parent(True, output)
    p.events.append(h.orchestrator_completed(now))
    inst.state = bk.dumps()
    return p.committed()


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
    # Entity requests of the last episode are sent (DTFx sends an episode's messages with its
    # continue-as-new); responses to them go to the old execution and are dropped.
    sent = [m for m in p.commit.new_messages if ent.is_entity_id(m.instance_id)]
    p.commit.new_messages = [
        *sent,
        Message(inst.instance_id, "event", json.dumps(started), p.now, execution_id=execution_id),
    ]
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
    return p.committed()


# -- rewind ----------------------------------------------------------------------------------

_FAILURES = frozenset(
    {EventType.TaskFailed, EventType.SubOrchestrationInstanceFailed, EventType.ExecutionCompleted}
)
_RESULTS = frozenset(
    {
        EventType.TaskCompleted,
        EventType.TaskFailed,
        EventType.SubOrchestrationInstanceCompleted,
        EventType.SubOrchestrationInstanceFailed,
    }
)


class RewindRefused(Exception):
    pass


def rewind_blocker(inst: Instance) -> str | None:
    """Why `inst` (Failed) cannot be rewound, or None."""
    blocker = Bookkeeping.loads(inst.state).rewind_blocker
    return (
        f"Instance '{inst.instance_id}' cannot be rewound: {blocker}. Restart it instead."
        if blocker
        else None
    )


def plan_rewind(
    inst: Instance,
    history: list[str],
    reason: str | None,
    now: dt.datetime,
    covered_tasks: frozenset[int] = frozenset(),
    covered_timers: frozenset[int] = frozenset(),
) -> EpisodeCommit:
    """Rewind a Failed instance: forget the failure and continue where it failed.

    The failing episode (the last one) loses its TaskFailed / SubOrchestrationInstanceFailed
    events and its ExecutionCompleted, so on replay the orchestrator waits for those calls again;
    every call scheduled but not completed in the remaining history is redone: activities run
    again with the same task id (the SDK's ids stay valid), sub-orchestrations get a rewind
    request (recursively), timers are re-armed. `covered_*` are tasks/timers whose result is
    still on its way (running work items, queued results); they are not redone. A GenericEvent
    message makes the orchestrator replay (this is what lets fixed orchestrator code continue).
    Raises RewindRefused when the bookkeeping says a rewind cannot help (rewind_blocker).
    """
    blocker = rewind_blocker(inst)
    if blocker is not None:
        raise RewindRefused(blocker)
    events = [json.loads(e) for e in history]
    last_start = max(
        (n for n, e in enumerate(events) if e["EventType"] == EventType.OrchestratorStarted), default=-1
    )
    keep = [n for n, e in enumerate(events) if n < last_start or e["EventType"] not in _FAILURES]
    kept = [events[n] for n in keep]
    done = {e["TaskScheduledId"] for e in kept if e["EventType"] in _RESULTS}
    fired = {e["TimerId"] for e in kept if e["EventType"] == EventType.TimerFired}
    commit = EpisodeCommit(instance=inst, history_append=[history[n] for n in keep], history_reset=True)
    for e in kept:
        kind, task_id = e["EventType"], e["EventId"]
        if kind == EventType.TaskScheduled and task_id not in done and task_id not in covered_tasks:
            work_kind = "http" if e["Name"] == HTTP_ACTIVITY else "activity"
            commit.new_work.append(
                WorkItem(inst.instance_id, inst.execution_id, task_id, e["Name"], e.get("Input"), work_kind)
            )
        elif (
            kind == EventType.SubOrchestrationInstanceCreated
            and task_id not in done
            and task_id not in covered_tasks
        ):
            commit.new_messages.append(
                Message(e["InstanceId"], "rewind", json.dumps({"reason": reason}), now)
            )
        elif kind == EventType.TimerCreated and task_id not in fired and task_id not in covered_timers:
            fire_at = h.parse_time(e["FireAt"])
            commit.new_messages.append(
                Message(
                    inst.instance_id,
                    "event",
                    json.dumps(h.timer_fired(now, task_id, e["FireAt"])),
                    max(fire_at, now),
                    execution_id=inst.execution_id,
                    timer_id=task_id,
                )
            )
    replay = h.generic_event(now, f"Rewound: {reason or ''}")
    commit.new_messages.append(
        Message(inst.instance_id, "event", json.dumps(replay), now, execution_id=inst.execution_id)
    )
    inst.status = "Running"
    inst.output = None
    inst.updated = now
    return commit


def plan_renotify(inst: Instance, now: dt.datetime) -> EpisodeCommit:
    """A rewind reached a sub-orchestration that has nothing to rewind: report its outcome to the
    parent again (the parent may have been rewound and be waiting for it)."""
    p = _Planner(inst, Bookkeeping.loads(inst.state), now, Catalog(frozenset(), frozenset()))
    output = None if inst.output is None else json.loads(inst.output)
    if inst.status == "Completed":
        p.notify_parent(True, inst.output)
    elif inst.status == "Failed":
        p.notify_parent(False, None, str(output))
    elif inst.status in ("Terminated", "Canceled"):
        p.notify_parent(False, None, f"Sub-orchestration '{inst.name}' was terminated: {output}")
    return p.commit
