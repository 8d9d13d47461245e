"""Run the durable engine in-process on a real event loop against the real SDK (no HTTP).

For engine tests that need no server: functions come from a DFApp built in the test module,
user code is called directly, and the store is in memory or SQLite.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
import time
from collections.abc import Mapping
from concurrent.futures import Future
from typing import Any

from selfhost.durable.engine import Engine
from selfhost.durable.host import durable_index
from selfhost.durable.store import TERMINAL_STATUSES, Instance, Store
from selfhost.functions import FunctionInfo, InvocationResult, SystemClock


def functions_of(app: Any) -> list[FunctionInfo]:
    """A minimal index of a DFApp's durable functions (the runtime's indexer does the full job)."""
    out = []
    for f in app.get_functions():
        trig = f.get_trigger()
        raw = json.loads(f.get_function_json())["bindings"]
        trigger = next(b for b in raw if b["type"] == trig.type)
        uf = f.get_user_function()
        durable = trigger.get("activity") or trigger.get("orchestration") or f.get_function_name()
        py = getattr(getattr(uf, "orchestrator_function", uf), "__name__", None)
        out.append(
            FunctionInfo(
                name=f.get_function_name(), trigger_type=trig.type, trigger=trigger, bindings=tuple(raw),
                user_function=uf, is_async=inspect.iscoroutinefunction(uf), durable_name=durable, python_name=py,
            )
        )  # fmt: skip
    return out


class DirectInvoker:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    async def invoke(
        self, fn: FunctionInfo, trigger_kwargs: dict[str, Any], *, binding_data: Mapping[str, Any] | None = None,
        positional: tuple[Any, ...] = (),
    ) -> InvocationResult:  # fmt: skip
        self.calls.append((fn.name, next(iter(trigger_kwargs.values()), None)))
        if fn.is_async:
            value = await fn.user_function(*positional, **trigger_kwargs)
        else:
            value = await asyncio.to_thread(fn.user_function, *positional, **trigger_kwargs)
        return InvocationResult(value)


class EngineHarness:
    """Owns a loop thread running an Engine; test code calls it synchronously."""

    def __init__(self, app: Any, store: Store, max_activities: int = 16) -> None:
        self.invoker = DirectInvoker()
        self.store = store
        self.loop = asyncio.new_event_loop()
        self.engine = Engine(
            store=store, functions=durable_index(functions_of(app)), invoker=self.invoker,
            clock=SystemClock(), max_activities=max_activities, max_orchestrations=8,
        )  # fmt: skip
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> EngineHarness:
        self._thread.start()
        self.call(self.engine.start())
        return self

    def __exit__(self, *exc: object) -> None:
        self.call(self.engine.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()
        self.store.close()

    def call(self, coro: Any) -> Any:
        fut: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return fut.result(30)

    def start(self, name: str, value: Any = None, instance_id: str | None = None) -> str:
        # As the SDK client does: the start body is a JSON string holding JSON text (§4.4).
        text = None if value is None else json.dumps(json.dumps(value))
        return self.engine.start_new(name, instance_id, text).instance_id

    def wait(
        self, instance_id: str, timeout: float = 30.0, statuses: frozenset[str] = TERMINAL_STATUSES
    ) -> Instance:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            inst = self.store.get_instance(instance_id)
            if inst is not None and inst.status in statuses:
                return inst
            time.sleep(0.02)
        raise AssertionError(f"{instance_id} not in {set(statuses)}: {self.store.get_instance(instance_id)}")

    def output(self, instance_id: str, timeout: float = 30.0) -> Any:
        inst = self.wait(instance_id, timeout)
        assert inst.status == "Completed", (inst.status, inst.output)
        return json.loads(inst.output) if inst.output else None
