"""Fakes for trigger listener tests: a recording Invoker, a settable Clock, FunctionInfo builders.

Listener tests run the real listeners on a real asyncio loop (`run_async`) with these fakes, so
they exercise the polling, receipts and schedule code without the indexer or the invoker.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from selfhost.config import HostConfig, QueuesConfig
from selfhost.functions import FunctionInfo, InvocationResult

T = TypeVar("T")
L = TypeVar("L", bound="Listener")


class Listener(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass
class Call:
    function: str
    kwargs: dict[str, Any]
    binding_data: dict[str, Any]


@dataclass
class FakeInvoker:
    """Records every invocation; fails the first `fail_times` ones (or when `fail_if` says so).

    `duration` keeps each call busy for that long (real seconds), for overlap/concurrency tests.
    """

    fail_times: int = 0
    duration: float = 0.0
    fail_if: Callable[[Call], bool] | None = None
    on_call: Callable[[Call], Awaitable[None]] | None = None
    calls: list[Call] = field(default_factory=list)
    running: int = 0
    max_running: int = 0

    async def invoke(
        self,
        fn: FunctionInfo,
        trigger_kwargs: dict[str, Any],
        *,
        binding_data: Mapping[str, Any] | None = None,
        positional: tuple[Any, ...] = (),
    ) -> InvocationResult:
        call = Call(fn.name, dict(trigger_kwargs), dict(binding_data or {}))
        self.calls.append(call)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        try:
            if self.on_call is not None:
                await self.on_call(call)
            if self.duration:
                await asyncio.sleep(self.duration)
            if self.fail_times > 0:
                self.fail_times -= 1
                raise RuntimeError("planned failure")
            if self.fail_if is not None and self.fail_if(call):
                raise RuntimeError("planned failure")
        finally:
            self.running -= 1
        return InvocationResult(return_value=None)


class FakeClock:
    """A clock that only moves when told to (or follows real time plus an offset)."""

    def __init__(self, start: dt.datetime | None = None) -> None:
        self._now = start or dt.datetime(2024, 1, 1, tzinfo=dt.UTC)

    def now(self) -> dt.datetime:
        return self._now

    def set(self, when: dt.datetime) -> None:
        self._now = when

    def advance(self, seconds: float) -> None:
        self._now += dt.timedelta(seconds=seconds)


def function_info(name: str, trigger: dict[str, Any], *others: dict[str, Any]) -> FunctionInfo:
    """A FunctionInfo as the indexer would build it from `function.json`-style binding dicts."""
    trigger = {"direction": "IN", **trigger}

    def user_function(**_: Any) -> None:
        return None

    return FunctionInfo(
        name=name,
        trigger_type=str(trigger["type"]),
        trigger=trigger,
        bindings=(trigger, *others),
        user_function=user_function,
        is_async=False,
    )


def host_config(tmp_path: Path, host_id: str = "testhost", **queues: Any) -> HostConfig:
    return HostConfig(
        app_root=tmp_path,
        state_dir=tmp_path / "state",
        host_id=host_id,
        queues=QueuesConfig(**queues),
    )


def run_async(coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
    """Run one test coroutine on a fresh event loop, failing instead of hanging."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def eventually(predicate: Callable[[], Any], timeout: float = 10.0, message: str = "") -> Any:
    """The async `wait_until`: poll `predicate` without blocking the loop the listeners run on."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        await asyncio.sleep(0.02)


async def eventually_async(
    predicate: Callable[[], Awaitable[Any]], timeout: float = 10.0, message: str = ""
) -> Any:
    """Like `eventually` for predicates that must await (e.g. reading Azurite)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if loop.time() >= deadline:
            raise AssertionError(f"timed out after {timeout}s: {message}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def listening(listener: L) -> AsyncIterator[L]:
    """A started listener, stopped on exit (even when the test body fails)."""
    await listener.start()
    try:
        yield listener
    finally:
        await listener.stop()


async def queue_exists(queue: Any) -> bool:
    """Whether an (async) QueueClient's queue exists yet."""
    try:
        await queue.get_queue_properties()
    except Exception:  # noqa: BLE001 - any failure means "not there (yet)" for this probe
        return False
    return True
