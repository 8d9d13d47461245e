"""Durable entities: pure planning of entity operations (no I/O, no clock).

Shapes (verified by running azure-functions-durable 1.7.0; they follow the extension's legacy
out-of-proc entity protocol, TaskEntityShim / EntityTriggerAttributeBindingProvider):

* An entity is an instance with the scheduler id `@{name.lower()}@{key}` (the SDK's
  `EntityId.get_scheduler_id`; the extension lowercases names too). Its row in the instances
  table keeps `{"exists", "state"}` in `Instance.state`; it has no history.
* A request to an entity is a message to that id holding `EventRaised(Name="op",
  Input=<request JSON>)`, the request being the extension's RequestMessage
  `{"id", "op", "signal", "input", "parent", "parentExecution", "timestamp"}`; `input` is JSON
  text of the operation input's JSON text (the SDK's `get_input` decodes twice).
* The entity function gets one JSON string per batch:
  `{"self": {"name", "key"}, "exists", "state", "batch": [{"name", "input", "isSignal", "id"}]}`
  and returns `{"entityExists", "entityState", "results": [{"isError", "result", ...}], "signals"}`
  (`state`/`entityState` and each `result` are JSON text; one result per operation, in order).
* A call's response goes to the calling orchestration (its execution) as
  `EventRaised(Name=<request id>, Input=json({"result": <text>[, "exceptionType": "Error"]}))`;
  the SDK re-keys the call task by the request id when it replays the `EventSent` whose
  `EventId` is the call's task id, and raises `Exception(result)` when `exceptionType` is set.
* Signals an entity returns (`{"target": {"name", "key"}, "name", "input"}`) become requests to
  their targets. The Python SDK's entity context has no `signal_entity`, so it always returns `[]`.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from selfhost.durable import history as h
from selfhost.durable.history import EventType
from selfhost.durable.store import EpisodeCommit, Instance, Message

OPERATION_EVENT = "op"  # the EventRaised name of entity requests
_REQUEST_NAMESPACE = uuid.UUID("5b0e3d3c-6f7e-4b52-9d87-0c5f2c1e8a41")


def scheduler_id(name: str, key: str) -> str:
    return f"@{name.lower()}@{key}"


def is_entity_id(instance_id: str) -> bool:
    return instance_id.startswith("@")


def parse_scheduler_id(instance_id: str) -> tuple[str, str] | None:
    """`@name@key` -> (name, key); None if the id is not an entity id."""
    if not is_entity_id(instance_id):
        return None
    name, sep, key = instance_id[1:].partition("@")
    if not sep or not name or not key:
        return None
    return name, key


def call_request_id(instance_id: str, execution_id: str, task_id: int) -> str:
    """Deterministic request id of an orchestration's entity call/signal (same after a re-run)."""
    return str(uuid.uuid5(_REQUEST_NAMESPACE, f"{instance_id}\n{execution_id}\n{task_id}"))


def request_message(
    *,
    request_id: str,
    operation: str,
    signal: bool,
    input_text: str | None,
    now: dt.datetime,
    parent_instance_id: str | None = None,
    parent_execution_id: str | None = None,
) -> dict[str, Any]:
    """The extension's RequestMessage; `input_text` is the serialized input (JSON text of JSON text)."""
    return {
        "id": request_id,
        "op": operation,
        "signal": signal,
        "input": input_text,
        "parent": parent_instance_id,
        "parentExecution": parent_execution_id,
        "timestamp": h.fmt_time(now),
    }


def request_to(target: str, request: dict[str, Any], now: dt.datetime) -> Message:
    """The inbox message carrying `request` to entity `target`."""
    event = h.event_raised(now, OPERATION_EVENT, json.dumps(request))
    return Message(target, "event", json.dumps(event), now)


def operation_input(action_input: str | None) -> str:
    """Serialized operation input of an orchestration's CallEntity/SignalEntity action.

    The action's `input` is the SDK's JSON text; the extension stores it as a JSON string (the
    entity's `get_input` does `df_loads(json.loads(input))`)."""
    return json.dumps(action_input if action_input is not None else "null")


def client_operation_input(body: bytes, content_type: str) -> str:
    """Serialized operation input of `POST entities/{name}/{key}` (HttpApiHandler).

    JSON bodies are re-serialized (the SDK client posts a JSON string holding JSON text); other
    content is taken as a string. An empty body is delivered as JSON null (the extension leaves
    the input unset, on which the SDK's `get_input` raises; null makes it return None).
    Raises ValueError for invalid JSON."""
    if not body.strip():
        return "null"
    text = body.decode("utf-8")
    if content_type.split(";")[0].strip().lower() == "application/json":
        return json.dumps(json.loads(text))
    return json.dumps(text)


# -- entity state --------------------------------------------------------------------------------


@dataclass
class EntityStatus:
    """What an entity instance keeps in `Instance.state`."""

    exists: bool = False
    state: str | None = None  # JSON text, as the entity function returned it

    @classmethod
    def loads(cls, text: str) -> EntityStatus:
        data = json.loads(text or "{}")
        return cls(exists=bool(data.get("exists")), state=data.get("state"))

    def dumps(self) -> str:
        return json.dumps({"exists": self.exists, "state": self.state}, separators=(",", ":"))


def new_entity_instance(instance_id: str, now: dt.datetime, execution_id: str) -> Instance:
    parsed = parse_scheduler_id(instance_id)
    name = parsed[0] if parsed else instance_id
    return Instance(instance_id, name, execution_id, "Running", None, now, now, state=EntityStatus().dumps())


# -- batches -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    message_id: int
    body: dict[str, Any]  # the RequestMessage

    @property
    def is_signal(self) -> bool:
        return bool(self.body.get("signal"))


def select_batch(messages: Sequence[Message], limit: int) -> tuple[list[Request], list[int]]:
    """The requests to run now (oldest first) and the ids of messages that are not requests."""
    batch: list[Request] = []
    dropped: list[int] = []
    for m in messages:
        if len(batch) >= limit:
            break
        request = _request_of(m)
        if request is None:
            dropped.append(m.id)
        else:
            batch.append(Request(m.id, request))
    return batch, dropped


def _request_of(m: Message) -> dict[str, Any] | None:
    if m.kind != "event":
        return None  # terminate/suspend/resume do not apply to entities
    try:
        event = json.loads(m.body)
        if event.get("EventType") != EventType.EventRaised or event.get("Name") != OPERATION_EVENT:
            return None
        request = json.loads(event.get("Input") or "null")
    except (json.JSONDecodeError, AttributeError, TypeError):
        return None
    if not isinstance(request, dict) or not isinstance(request.get("op"), str):
        return None
    return request


def context_json(instance_id: str, status: EntityStatus, batch: Sequence[Request]) -> str:
    """The entity function's input (EntityContextToString in the extension)."""
    name, key = parse_scheduler_id(instance_id) or (instance_id, "")
    return json.dumps(
        {
            "self": {"name": name, "key": key},
            "exists": status.exists,
            "state": status.state if status.exists else None,
            "batch": [
                {
                    "name": r.body["op"],
                    "input": r.body.get("input"),
                    "isSignal": r.is_signal,
                    "id": r.body.get("id"),
                }
                for r in batch
            ],
        }
    )


@dataclass(frozen=True)
class OperationOutcome:
    result: str  # JSON text
    is_error: bool


@dataclass(frozen=True)
class BatchReply:
    """The entity function's output, or `error` when it raised or returned something unusable."""

    exists: bool = False
    state: str | None = None
    results: tuple[OperationOutcome, ...] = ()
    signals: tuple[dict[str, Any], ...] = ()
    error: str | None = None

    @classmethod
    def parse(cls, text: str) -> BatchReply:
        try:
            data = json.loads(text)
            results = tuple(
                OperationOutcome(
                    result=r["result"] if isinstance(r.get("result"), str) else json.dumps(r.get("result")),
                    is_error=bool(r.get("isError")),
                )
                for r in data["results"]
            )
            state = data.get("entityState")
            return cls(
                exists=bool(data.get("entityExists")),
                state=state if isinstance(state, str) or state is None else json.dumps(state),
                results=results,
                signals=tuple(s for s in data.get("signals") or () if isinstance(s, dict)),
            )
        except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
            return cls(error=f"The entity function returned an invalid result: {exc!r}")

    @classmethod
    def failed(cls, error: str) -> BatchReply:
        return cls(error=error)


def response_input(outcome: OperationOutcome) -> str:
    """EventRaised.Input of a call's response (the extension's ResponseMessage)."""
    body: dict[str, Any] = {"result": outcome.result}
    if outcome.is_error:
        body["exceptionType"] = "Error"
    return json.dumps(body)


def plan_entity_batch(
    inst: Instance,
    batch: Sequence[Request],
    reply: BatchReply,
    now: dt.datetime,
    new_request_id: Callable[[], str] = lambda: str(uuid.uuid4()),
) -> EpisodeCommit:
    """Apply one batch: new entity state, responses to callers, signals sent by the entity.

    The caller sets `consumed`. When the function failed as a whole (`reply.error`) the state
    is unchanged and every caller gets that error (no orchestration waits forever)."""
    status = EntityStatus.loads(inst.state)
    if reply.error is None:
        status = EntityStatus(reply.exists, reply.state if reply.exists else None)
    commit = EpisodeCommit(instance=inst)
    for n, request in enumerate(batch):
        parent = request.body.get("parent")
        if request.is_signal or not parent or not request.body.get("id"):
            continue  # nobody waits for the result
        if reply.error is not None:
            outcome = OperationOutcome(json.dumps(reply.error), True)
        elif n < len(reply.results):
            outcome = reply.results[n]
        else:
            outcome = OperationOutcome(
                json.dumps("The entity function returned no result for this operation."), True
            )
        event = h.event_raised(now, str(request.body["id"]), response_input(outcome))
        commit.new_messages.append(
            Message(
                str(parent), "event", json.dumps(event), now, execution_id=request.body.get("parentExecution")
            )
        )
    if reply.error is None:
        for signal in reply.signals:
            target = signal.get("target") or {}
            name, key = target.get("name"), target.get("key")
            if (
                not isinstance(name, str)
                or not isinstance(key, str)
                or not isinstance(signal.get("name"), str)
            ):
                continue
            request_body = request_message(
                request_id=new_request_id(),
                operation=signal["name"],
                signal=True,
                input_text=signal.get("input") if isinstance(signal.get("input"), str) else "null",
                now=now,
                parent_instance_id=inst.instance_id,
            )
            commit.new_messages.append(request_to(scheduler_id(name, key), request_body, now))
    inst.state = status.dumps()
    inst.status = "Running"
    inst.updated = now
    return commit
