"""Builders for what the Python SDK sends back to the host (durable-protocol.md §2.3/§2.4).

`selfhost.durable.history` builds the history events the host writes; these build the other
direction: the action JSON and OrchestratorState replies that `handle(context)` returns, in the
exact shapes azure-functions-durable 1.7 produces (V3 schema, `schemaVersion: 2`).
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from selfhost.durable import history as h
from selfhost.durable.store import Instance

Action = dict[str, Any]

T0 = dt.datetime(2025, 1, 1, 12, 0, 0, tzinfo=dt.UTC)


def started_event(inst: Instance, now: dt.datetime = T0) -> dict[str, Any]:
    """The ExecutionStarted event the engine writes first for `inst`."""
    return h.execution_started(
        now,
        name=inst.name,
        instance_id=inst.instance_id,
        execution_id=inst.execution_id,
        input_text=inst.input,
    )


def at(seconds: float) -> dt.datetime:
    """T0 + seconds (aware UTC)."""
    return T0 + dt.timedelta(seconds=seconds)


def dumps(value: Any) -> str:
    """JSON text as the SDK's df_dumps writes action inputs (`None` -> "null")."""
    return json.dumps(value)


def activity(name: str, value: Any = None) -> Action:
    return {"actionType": 0, "functionName": name, "input": dumps(value)}


def retry_options(first_ms: int, attempts: int) -> dict[str, int]:
    return {"firstRetryIntervalInMilliseconds": first_ms, "maxNumberOfAttempts": attempts}


def activity_with_retry(name: str, value: Any, first_ms: int, attempts: int) -> Action:
    """CallActivityWithRetry, wrapped in a one-child WhenAll as V2/V3 emit it."""
    inner = {
        "actionType": 1,
        "functionName": name,
        "input": dumps(value),
        "retryOptions": retry_options(first_ms, attempts),
    }
    return when_all(inner)


def sub_orchestrator(name: str, value: Any = None, instance_id: str | None = None) -> Action:
    return {
        "actionType": 2,
        "functionName": name,
        "input": dumps(value),
        "instanceId": instance_id,
        "version": None,
    }


def sub_orchestrator_with_retry(
    name: str, value: Any, first_ms: int, attempts: int, instance_id: str | None = None
) -> Action:
    inner = {
        "actionType": 3,
        "functionName": name,
        "input": dumps(value),
        "retryOptions": retry_options(first_ms, attempts),
        "instanceId": instance_id,
        "version": None,
    }
    return when_all(inner)


def continue_as_new(value: Any) -> Action:
    return {"actionType": 4, "input": dumps(value)}


def timer(fire_at: dt.datetime, canceled: bool = False) -> Action:
    return {"actionType": 5, "fireAt": h.fmt_time(fire_at), "isCanceled": canceled}


def wait_event(name: str) -> Action:
    return {"actionType": 6, "externalEventName": name, "reason": "ExternalEvent"}


def call_entity(instance_id: str, operation: str, value: Any = None) -> Action:
    return {"actionType": 7, "instanceId": instance_id, "operation": operation, "input": dumps(value)}


def http(method: str, uri: str, content: str | None = None, headers: dict[str, str] | None = None) -> Action:
    return {
        "actionType": 8,
        "httpRequest": {"method": method, "uri": uri, "content": content, "headers": headers},
    }


def when_all(*children: Action) -> Action:
    return {"actionType": 12, "compoundActions": list(children)}


def when_any(*children: Action) -> Action:
    return {"actionType": 11, "compoundActions": list(children)}


_MISSING: Any = object()


def state(
    *actions: Action,
    done: bool = False,
    output: Any = _MISSING,
    custom_status: Any = _MISSING,
    error: str | None = None,
) -> str:
    """An OrchestratorState reply. `output`/`customStatus` keys only when given (the SDK omits
    `output` when None and `customStatus` when falsy)."""
    body: dict[str, Any] = {"isDone": done, "schemaVersion": 2, "actions": [list(actions)]}
    if output is not _MISSING:
        body["output"] = output
    if error is not None:
        body["error"] = error
    if custom_status is not _MISSING:
        body["customStatus"] = custom_status
    return json.dumps(body)
