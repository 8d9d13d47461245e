"""How the invoker calls user code, as the Python worker does (selfhost.invoker), with fake handlers."""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import azure.functions as func
import pytest

from selfhost.functions import FunctionInfo
from selfhost.invoker import FunctionInvocationError, FunctionTimeoutError, HostInvoker

pytestmark = pytest.mark.unit

T = TypeVar("T")


class RecordingOutput:
    def __init__(self) -> None:
        self.writes: list[tuple[str, Any, dict[str, Any]]] = []

    async def write(self, binding: Mapping[str, Any], value: Any, binding_data: Mapping[str, Any]) -> None:
        self.writes.append((str(binding["name"]), value, dict(binding_data)))


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-fn")
    yield pool
    pool.shutdown(wait=True)


def run(make: Callable[[], Awaitable[T]]) -> T:
    async def main() -> T:
        return await make()

    return asyncio.run(main())


def info(
    fn: Callable[..., Any], *bindings: dict[str, Any], trigger: str = "timerTrigger", trigger_name: str = "t"
) -> FunctionInfo:
    trig = {"direction": "IN", "type": trigger, "name": trigger_name}
    return FunctionInfo(
        name=fn.__name__,
        trigger_type=trigger,
        trigger=trig,
        bindings=(*bindings, trig),
        user_function=fn,
        is_async=inspect.iscoroutinefunction(fn),
    )


def test_sync_function_runs_in_the_pool_and_async_on_the_loop(executor: ThreadPoolExecutor) -> None:
    seen: dict[str, Any] = {}

    def sync_fn(t: str) -> str:
        seen["sync"] = threading.current_thread().name
        return t.upper()

    async def async_fn(t: str) -> str:
        seen["async"] = threading.current_thread().name
        return t * 2

    async def both() -> tuple[Any, Any]:
        invoker = HostInvoker(executor=executor)
        a = await invoker.invoke(info(sync_fn), {"t": "x"})
        b = await invoker.invoke(info(async_fn), {"t": "y"})
        return a.return_value, b.return_value

    assert run(both) == ("X", "yy")
    assert seen["sync"].startswith("test-fn")
    assert seen["async"] == threading.current_thread().name


def test_out_bindings_go_to_their_handlers_with_binding_data(executor: ThreadPoolExecutor) -> None:
    def fn(t: str, msg: func.Out[str], outblob: func.Out[bytes], unset: func.Out[str]) -> str:
        msg.set("hello")
        outblob.set(b"data")
        return "returned"

    queue, blob = RecordingOutput(), RecordingOutput()
    fi = info(
        fn,
        {"direction": "OUT", "type": "queue", "name": "msg", "queueName": "q"},
        {"direction": "OUT", "type": "blob", "name": "outblob", "path": "c/{name}"},
        {"direction": "OUT", "type": "queue", "name": "unset", "queueName": "q2"},
        {"direction": "OUT", "type": "queue", "name": "$return", "queueName": "q3"},
    )
    invoker = HostInvoker(executor=executor, output_handlers={"Queue": queue, "blob": blob})
    result = run(lambda: invoker.invoke(fi, {"t": "x"}, binding_data={"name": "n1"}))
    assert result.outputs == {"msg": "hello", "outblob": b"data", "unset": None}
    assert queue.writes == [("msg", "hello", {"name": "n1"}), ("$return", "returned", {"name": "n1"})]
    assert blob.writes == [("outblob", b"data", {"name": "n1"})]


def test_durable_client_binding_and_context_are_passed(executor: ThreadPoolExecutor) -> None:
    async def starter(req: str, client: str, context: func.Context) -> dict[str, Any]:
        return {"client": client, "name": context.function_name, "id": context.invocation_id}

    fi = info(
        starter,
        {"direction": "IN", "type": "durableClient", "name": "client"},
        trigger="httpTrigger",
        trigger_name="req",
    )
    invoker = HostInvoker(
        executor=executor, client_binding_provider=lambda: '{"taskHubName": "H"}', function_directory="/app"
    )
    value = run(lambda: invoker.invoke(fi, {"req": "r"})).return_value
    assert value["client"] == '{"taskHubName": "H"}'
    assert value["name"] == "starter" and len(value["id"]) == 36


def test_durable_client_without_a_durable_engine_fails_clearly(executor: ThreadPoolExecutor) -> None:
    async def starter(req: str, client: str) -> None:
        return None

    fi = info(
        starter,
        {"direction": "IN", "type": "durableClient", "name": "client"},
        trigger="httpTrigger",
        trigger_name="req",
    )
    with pytest.raises(FunctionInvocationError, match="durable engine is not running"):
        run(lambda: HostInvoker(executor=executor).invoke(fi, {"req": "r"}))


def test_positional_call_fills_the_trigger_parameter(executor: ThreadPoolExecutor) -> None:
    # Shaped like the durable SDK's orchestrator handle: one parameter named `context`.
    def handle(context: str) -> str:
        return f"state for {context}"

    fi = info(handle, trigger="orchestrationTrigger", trigger_name="ctx")
    result = run(lambda: HostInvoker(executor=executor).invoke(fi, {}, positional=('{"history": []}',)))
    assert result.return_value == 'state for {"history": []}'


def test_missing_input_binding_is_reported(executor: ThreadPoolExecutor) -> None:
    def fn(t: str, inblob: bytes) -> None:
        return None

    fi = info(fn, {"direction": "IN", "type": "blob", "name": "inblob"})
    with pytest.raises(FunctionInvocationError, match="no value for binding 'inblob'"):
        run(lambda: HostInvoker(executor=executor).invoke(fi, {"t": "x"}))


def test_failure_is_logged_with_traceback_and_reraised(
    executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(t: str) -> None:
        raise ValueError("bad thing")

    with (
        caplog.at_level(logging.INFO, logger="selfhost.invoker"),
        pytest.raises(ValueError, match="bad thing"),
    ):
        run(lambda: HostInvoker(executor=executor).invoke(info(broken), {"t": "x"}))
    (record,) = [r for r in caplog.records if "Functions.broken" in r.getMessage()]
    assert "Failed" in record.getMessage() and record.exc_info is not None


def test_success_is_one_log_line(executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    def ok(t: str) -> None:
        return None

    with caplog.at_level(logging.INFO, logger="selfhost.invoker"):
        run(lambda: HostInvoker(executor=executor).invoke(info(ok), {"t": "x"}))
    lines = [r.getMessage() for r in caplog.records if "Functions.ok" in r.getMessage()]
    assert len(lines) == 1
    assert "Succeeded" in lines[0] and "Duration=" in lines[0] and "Id=" in lines[0]


@pytest.mark.parametrize("kind", ["sync", "async"])
def test_function_timeout(kind: str, executor: ThreadPoolExecutor, caplog: pytest.LogCaptureFixture) -> None:
    def slow_sync(t: str) -> None:
        time.sleep(1.0)

    async def slow_async(t: str) -> None:
        await asyncio.sleep(5)

    fi = info(slow_sync if kind == "sync" else slow_async)
    invoker = HostInvoker(executor=executor, function_timeout_s=0.2)
    started = time.monotonic()
    with caplog.at_level(logging.INFO), pytest.raises(FunctionTimeoutError):
        run(lambda: invoker.invoke(fi, {"t": "x"}))
    assert time.monotonic() - started < 0.9
    assert "Timeout value of 0.2s exceeded" in caplog.text


def test_the_functions_own_timeout_error_is_not_ours(executor: ThreadPoolExecutor) -> None:
    async def raises_timeout(t: str) -> None:
        raise TimeoutError("upstream")

    with pytest.raises(TimeoutError, match="upstream") as caught:
        run(
            lambda: HostInvoker(executor=executor, function_timeout_s=5).invoke(
                info(raises_timeout), {"t": "x"}
            )
        )
    assert not isinstance(caught.value, FunctionTimeoutError)


def test_calls_from_another_loop_run_on_the_host_loop(executor: ThreadPoolExecutor) -> None:
    host_loop = asyncio.new_event_loop()
    thread = threading.Thread(target=host_loop.run_forever, daemon=True)
    thread.start()
    try:
        loops: list[asyncio.AbstractEventLoop] = []

        async def where(t: str) -> None:
            loops.append(asyncio.get_running_loop())

        invoker = HostInvoker(executor=executor, loop=host_loop)
        run(lambda: invoker.invoke(info(where), {"t": "x"}))
        assert loops == [host_loop]
    finally:
        host_loop.call_soon_threadsafe(host_loop.stop)
        thread.join(timeout=5)
        host_loop.close()
