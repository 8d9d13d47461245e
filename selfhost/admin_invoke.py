"""`POST /admin/functions/{name}`: run a non-HTTP function once with `{"input": "..."}` as its trigger.

The host's FunctionsController does this for any function (functions-host-facts.md §2.3); here
timer and queue triggers get a trigger value built from the input (a `TimerRequest`, a
`QueueMessage` whose body is the input), and a trigger listener that knows better (the blob
listener, which must read the named blob) may take over by offering
`async def admin_invoke(self, input: str | None) -> None`. HTTP and durable functions are
refused with a reason (call the URL / use the durable API). No HTTP code lives here.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Awaitable, Mapping
from typing import TYPE_CHECKING, Any

from azure.functions.queue import QueueMessage
from azure.functions.timer import TimerRequest

from selfhost.functions import HTTP_TRIGGER, QUEUE_TRIGGER, TIMER_TRIGGER, FunctionInfo, Invoker
from selfhost.indexing import DURABLE_TRIGGERS

if TYPE_CHECKING:
    from selfhost.http.server import AdminInvoke

__all__ = ["make_admin_invoke"]

# azure.functions.queue is untyped; one Any-typed alias keeps mypy strict elsewhere.
_QueueMessage: Any = QueueMessage


def make_admin_invoke(invoker: Invoker, listeners: Mapping[str, object]) -> AdminInvoke:
    """`listeners` maps function name to its running trigger listener (if any)."""

    def admin_invoke(fn: FunctionInfo, text: str | None) -> Awaitable[None]:
        hook = getattr(listeners.get(fn.name), "admin_invoke", None)
        if callable(hook):
            result: Awaitable[None] = hook(text)
            return result
        kwargs, binding_data = _trigger_value(fn, text)
        return _run(invoker, fn, kwargs, binding_data)

    return admin_invoke


async def _run(
    invoker: Invoker, fn: FunctionInfo, kwargs: dict[str, Any], binding_data: dict[str, Any]
) -> None:
    await invoker.invoke(fn, kwargs, binding_data=binding_data)


def _trigger_value(fn: FunctionInfo, text: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(trigger kwargs, binding data); ValueError when this trigger cannot be run from the admin API."""
    name = str(fn.trigger.get("name"))
    if fn.trigger_type == TIMER_TRIGGER:
        schedule = {"AdjustForDST": True}
        return {name: TimerRequest(past_due=False, schedule_status={}, schedule=schedule)}, {}
    if fn.trigger_type == QUEUE_TRIGGER:
        now = _dt.datetime.now(_dt.UTC)
        body = text or ""
        msg_id = str(uuid.uuid4())
        message = _QueueMessage(
            id=msg_id,
            body=body.encode("utf-8"),
            dequeue_count=1,
            insertion_time=now,
            expiration_time=now + _dt.timedelta(days=7),
            time_next_visible=now,
            pop_receipt=None,
        )
        return {name: message}, {"QueueTrigger": body, "Id": msg_id, "DequeueCount": 1}
    if fn.trigger_type == HTTP_TRIGGER:
        raise ValueError(f"'{fn.name}' is an HTTP function: call its URL instead")
    if fn.trigger_type in DURABLE_TRIGGERS:
        raise ValueError(f"'{fn.name}' is a durable function: start orchestrations with the durable HTTP API")
    raise ValueError(f"'{fn.name}' ({fn.trigger_type}) cannot be invoked from the admin API by this runtime")
