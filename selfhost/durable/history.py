"""Builders for DTFx history events in the shape the Python SDK parses (durable-protocol.md §2.2).

Events are plain dicts (PascalCase keys, `EventType` as int) because they are stored as JSON and
handed to the SDK as JSON. Every builder sets the keys the SDK constructor requires.
"""

from __future__ import annotations

import datetime as dt
import json
from enum import IntEnum
from typing import Any

Event = dict[str, Any]


class EventType(IntEnum):
    ExecutionStarted = 0
    ExecutionCompleted = 1
    ExecutionFailed = 2
    ExecutionTerminated = 3
    TaskScheduled = 4
    TaskCompleted = 5
    TaskFailed = 6
    SubOrchestrationInstanceCreated = 7
    SubOrchestrationInstanceCompleted = 8
    SubOrchestrationInstanceFailed = 9
    TimerCreated = 10
    TimerFired = 11
    OrchestratorStarted = 12
    OrchestratorCompleted = 13
    EventSent = 14
    EventRaised = 15
    ContinueAsNew = 16
    GenericEvent = 17
    HistoryState = 18
    ExecutionSuspended = 19
    ExecutionResumed = 20
    ExecutionRewound = 21


class OrchestrationStatus(IntEnum):
    Running = 0
    Completed = 1
    ContinuedAsNew = 2
    Failed = 3
    Canceled = 4
    Terminated = 5
    Pending = 6
    Suspended = 7


def fmt_time(t: dt.datetime) -> str:
    """ISO-8601 UTC with microseconds and `Z`, as the extension writes timestamps."""
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> dt.datetime:
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value


def _event(kind: EventType, now: dt.datetime, event_id: int = -1, **extra: Any) -> Event:
    ev: Event = {"EventType": int(kind), "EventId": event_id, "IsPlayed": False, "Timestamp": fmt_time(now)}
    ev.update(extra)
    return ev


def orchestrator_started(now: dt.datetime) -> Event:
    return _event(EventType.OrchestratorStarted, now)


def orchestrator_completed(now: dt.datetime) -> Event:
    return _event(EventType.OrchestratorCompleted, now)


def execution_started(
    now: dt.datetime,
    *,
    name: str,
    instance_id: str,
    execution_id: str,
    input_text: str | None,
    parent: dict[str, Any] | None = None,
) -> Event:
    return _event(
        EventType.ExecutionStarted,
        now,
        Name=name,
        Version="",
        Input=input_text,
        OrchestrationInstance={"InstanceId": instance_id, "ExecutionId": execution_id},
        ParentInstance=parent,
        Tags=None,
    )


def execution_completed(now: dt.datetime, status: OrchestrationStatus, result: str | None) -> Event:
    return _event(
        EventType.ExecutionCompleted, now, OrchestrationStatus=int(status), Result=result, FailureDetails=None
    )


def execution_terminated(now: dt.datetime, reason: str | None) -> Event:
    return _event(EventType.ExecutionTerminated, now, Input=reason)


def execution_suspended(now: dt.datetime, reason: str | None) -> Event:
    return _event(EventType.ExecutionSuspended, now, Reason=reason)


def execution_resumed(now: dt.datetime, reason: str | None) -> Event:
    return _event(EventType.ExecutionResumed, now, Reason=reason)


def task_scheduled(now: dt.datetime, task_id: int, name: str, input_text: str | None) -> Event:
    return _event(EventType.TaskScheduled, now, task_id, Name=name, Version="", Input=input_text, Tags=None)


def task_completed(now: dt.datetime, task_id: int, result: str | None) -> Event:
    return _event(EventType.TaskCompleted, now, TaskScheduledId=task_id, Result=result)


def task_failed(now: dt.datetime, task_id: int, reason: str, details: str | None) -> Event:
    return _event(
        EventType.TaskFailed,
        now,
        TaskScheduledId=task_id,
        Reason=reason,
        Details=details,
        FailureDetails=None,
    )


def sub_orchestration_created(
    now: dt.datetime, task_id: int, name: str, instance_id: str, input_text: str | None
) -> Event:
    return _event(
        EventType.SubOrchestrationInstanceCreated,
        now,
        task_id,
        Name=name,
        Version="",
        InstanceId=instance_id,
        Input=input_text,
    )


def sub_orchestration_completed(now: dt.datetime, task_id: int, result: str | None) -> Event:
    return _event(EventType.SubOrchestrationInstanceCompleted, now, TaskScheduledId=task_id, Result=result)


def sub_orchestration_failed(now: dt.datetime, task_id: int, reason: str, details: str | None) -> Event:
    return _event(
        EventType.SubOrchestrationInstanceFailed,
        now,
        TaskScheduledId=task_id,
        Reason=reason,
        Details=details,
        FailureDetails=None,
    )


def timer_created(now: dt.datetime, timer_id: int, fire_at: dt.datetime) -> Event:
    return _event(EventType.TimerCreated, now, timer_id, FireAt=fmt_time(fire_at))


def timer_fired(now: dt.datetime, timer_id: int, fire_at: str) -> Event:
    return _event(EventType.TimerFired, now, TimerId=timer_id, FireAt=fire_at)


def event_raised(now: dt.datetime, name: str, input_text: str | None) -> Event:
    return _event(EventType.EventRaised, now, Name=name, Input=input_text)


def event_sent(now: dt.datetime, event_id: int, instance_id: str, name: str, input_text: str | None) -> Event:
    return _event(EventType.EventSent, now, event_id, InstanceId=instance_id, Name=name, Input=input_text)


def generic_event(now: dt.datetime, data: str) -> Event:
    return _event(EventType.GenericEvent, now, Data=data)


def json_value(text: str | None) -> Any:
    """The JSON value stored as text (inputs, outputs, results); text that is not JSON as is."""
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def restamp(event: Event, now: dt.datetime) -> Event:
    """A copy with Timestamp = now (events are stamped when they enter history)."""
    out = dict(event)
    out["Timestamp"] = fmt_time(now)
    return out
