"""Trigger values built for `POST /admin/functions/{name}` (selfhost.admin_invoke) and port resolution."""

from __future__ import annotations

import asyncio
from typing import Any

import azure.functions as func
import pytest

from selfhost.admin_invoke import make_admin_invoke
from selfhost.config import ConfigError
from selfhost.functions import FunctionInfo
from selfhost.process import resolve_port
from tests.support.trigger_fakes import FakeInvoker

pytestmark = pytest.mark.unit


def fn(name: str, trigger_type: str, arg: str = "arg") -> FunctionInfo:
    trigger = {"direction": "IN", "type": trigger_type, "name": arg}
    return FunctionInfo(name, trigger_type, trigger, (trigger,), lambda **kw: None, False)


def test_timer_gets_a_timer_request() -> None:
    invoker = FakeInvoker()
    asyncio.run(_await(make_admin_invoke(invoker, {})(fn("tick", "timerTrigger", "timer"), None)))
    (call,) = invoker.calls
    name, kwargs = call.function, call.kwargs
    assert name == "tick"
    assert isinstance(kwargs["timer"], func.TimerRequest) and kwargs["timer"].past_due is False


def test_queue_gets_a_message_with_the_input_as_body() -> None:
    invoker = FakeInvoker()
    asyncio.run(_await(make_admin_invoke(invoker, {})(fn("work", "queueTrigger", "msg"), "hello")))
    (call,) = invoker.calls
    kwargs, data = call.kwargs, call.binding_data
    msg = kwargs["msg"]
    assert isinstance(msg, func.QueueMessage)
    assert msg.get_body() == b"hello" and msg.dequeue_count == 1
    assert data["QueueTrigger"] == "hello" and data["Id"] == msg.id


@pytest.mark.parametrize(
    ("trigger", "reason"), [("httpTrigger", "call its URL"), ("activityTrigger", "durable")]
)
def test_http_and_durable_functions_are_refused_before_running(trigger: str, reason: str) -> None:
    invoker = FakeInvoker()
    with pytest.raises(ValueError, match=reason):
        make_admin_invoke(invoker, {})(fn("f", trigger), "x")
    assert invoker.calls == []


def test_a_listener_hook_takes_over() -> None:
    received: list[str | None] = []

    class BlobListenerLike:
        async def admin_invoke(self, text: str | None) -> None:
            received.append(text)

    invoker = FakeInvoker()
    hook = make_admin_invoke(invoker, {"onblob": BlobListenerLike()})
    asyncio.run(_await(hook(fn("onblob", "blobTrigger"), "container/a.txt")))
    assert received == ["container/a.txt"] and invoker.calls == []


async def _await(awaitable: Any) -> None:
    await awaitable


@pytest.mark.parametrize(
    ("cli", "settings", "port"),
    [
        (9000, {"Host": {"LocalHttpPort": 7072}}, 9000),
        (None, {"Host": {"LocalHttpPort": "7072"}}, 7072),
        (None, {}, 7071),
    ],
)
def test_resolve_port(cli: int | None, settings: dict[str, Any], port: int) -> None:
    assert resolve_port(cli, settings) == port


def test_resolve_port_rejects_garbage() -> None:
    with pytest.raises(ConfigError, match="LocalHttpPort"):
        resolve_port(None, {"Host": {"LocalHttpPort": "seventy"}})
