"""`HostInvoker`: runs one user function the way the Python worker does (durable-protocol.md §1.3).

Arguments go by keyword, keyed by binding name: the trigger value from the caller, the client
binding JSON for each `durableClient` input, an `Out` holder for each output binding other than
`$return`, and an invocation `context` when the signature asks for one. Sync functions run in
the host's thread pool; async ones are awaited on the host's single long-lived event loop (the
durable SDK's aiohttp session binds to the first loop it sees, pitfall 4), so a call arriving
from another loop is handed over to the host loop. Output values go to the output handler
registered for their binding type. One log line per invocation; exceptions are logged with
their traceback and re-raised; `functionTimeout` is enforced.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from typing import Any

from selfhost.functions import DURABLE_CLIENT, FunctionInfo, InvocationResult
from selfhost.triggers.base import OutputHandler
from selfhost.worker_types import InvocationContext, Out

__all__ = ["FunctionInvocationError", "FunctionTimeoutError", "HostInvoker"]

log = logging.getLogger(__name__)

# Binding types the HTTP server reads itself from the result, so no handler is expected.
_READ_BY_CALLER = frozenset({"http"})


class FunctionInvocationError(RuntimeError):
    """The host could not build the call (a binding has no value); user code did not run."""


class FunctionTimeoutError(TimeoutError):
    """The function ran longer than host.json `functionTimeout`."""


@functools.cache
def _parameters(target: Callable[..., Any]) -> tuple[tuple[str, ...], bool]:
    """(positional parameter names in order, whether a parameter is named `context`)."""
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return (), False
    positional = tuple(
        p.name
        for p in params
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )
    return positional, any(p.name == "context" for p in params)


class HostInvoker:
    """The runtime's `Invoker` (see `selfhost.functions.Invoker`)."""

    def __init__(
        self,
        *,
        executor: Executor,
        output_handlers: Mapping[str, OutputHandler] | None = None,
        client_binding_provider: Callable[[], str] | None = None,
        function_timeout_s: float | None = None,
        function_directory: str = "",
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self._executor = executor
        self._handlers = {k.lower(): v for k, v in (output_handlers or {}).items()}
        self._client_binding_provider = client_binding_provider
        self._timeout = function_timeout_s
        self._directory = function_directory
        self._loop = loop
        self._unhandled_warned: set[str] = set()

    async def invoke(
        self,
        fn: FunctionInfo,
        trigger_kwargs: dict[str, Any],
        *,
        binding_data: Mapping[str, Any] | None = None,
        positional: tuple[Any, ...] = (),
    ) -> InvocationResult:
        if self._loop is not None and asyncio.get_running_loop() is not self._loop:
            future = asyncio.run_coroutine_threadsafe(
                self.invoke(fn, trigger_kwargs, binding_data=binding_data, positional=positional), self._loop
            )
            return await asyncio.wrap_future(future)
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()

        def elapsed_ms() -> int:
            return round((time.perf_counter() - started) * 1000)

        try:
            result = await self._invoke(fn, trigger_kwargs, binding_data or {}, positional, invocation_id)
        except asyncio.CancelledError:
            log.warning(
                "Executed 'Functions.%s' (Cancelled, Id=%s, Duration=%dms)",
                fn.name,
                invocation_id,
                elapsed_ms(),
            )
            raise
        except Exception:
            log.exception(
                "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", fn.name, invocation_id, elapsed_ms()
            )
            raise
        log.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", fn.name, invocation_id, elapsed_ms()
        )
        return result

    async def _invoke(
        self,
        fn: FunctionInfo,
        trigger_kwargs: dict[str, Any],
        binding_data: Mapping[str, Any],
        positional: tuple[Any, ...],
        invocation_id: str,
    ) -> InvocationResult:
        kwargs, outs = self._arguments(fn, trigger_kwargs, positional, invocation_id)
        value = await self._call(fn, positional, kwargs, invocation_id)
        outputs = {name: out.get() for name, out in outs.items()}
        await self._write_outputs(fn, value, outputs, binding_data)
        return InvocationResult(return_value=value, outputs=outputs)

    def _arguments(
        self,
        fn: FunctionInfo,
        trigger_kwargs: dict[str, Any],
        positional: tuple[Any, ...],
        invocation_id: str,
    ) -> tuple[dict[str, Any], dict[str, Out]]:
        names, wants_context = _parameters(fn.user_function)
        # Parameters filled positionally (the durable engine calls orchestrator handles that way).
        taken = set(names[: len(positional)])
        kwargs = dict(trigger_kwargs)
        outs: dict[str, Out] = {}
        trigger_name = fn.trigger.get("name")
        for b in fn.bindings:
            name = str(b.get("name"))
            if name == "$return" or name in kwargs or name in taken:
                continue
            kind, direction = str(b.get("type", "")).lower(), str(b.get("direction", "")).upper()
            if kind == DURABLE_CLIENT.lower() and direction == "IN":
                kwargs[name] = self._client_binding(fn)
            elif direction == "OUT":
                outs[name] = kwargs[name] = Out()
            elif name == trigger_name and positional:
                continue  # the trigger value is the positional argument
            else:
                raise FunctionInvocationError(
                    f"Function '{fn.name}': no value for binding '{name}' ({b.get('type')}, {direction})"
                )
        if wants_context and "context" not in kwargs and "context" not in taken:
            kwargs["context"] = InvocationContext(
                invocation_id=invocation_id, function_name=fn.name, function_directory=self._directory
            )
        return kwargs, outs

    def _client_binding(self, fn: FunctionInfo) -> str:
        if self._client_binding_provider is None:
            raise FunctionInvocationError(
                f"Function '{fn.name}' has a durable client binding but the durable engine is not running"
            )
        return self._client_binding_provider()

    async def _call(
        self, fn: FunctionInfo, positional: tuple[Any, ...], kwargs: dict[str, Any], invocation_id: str
    ) -> Any:
        target = fn.user_function
        if fn.is_async:
            awaitable: Any = target(*positional, **kwargs)
        else:
            # Copy contextvars so logging/tracing context set by the caller reaches the thread.
            call = functools.partial(contextvars.copy_context().run, target, *positional, **kwargs)
            awaitable = asyncio.get_running_loop().run_in_executor(self._executor, call)
        if self._timeout is None:
            return await awaitable
        try:
            async with asyncio.timeout(self._timeout) as scope:
                return await awaitable
        except TimeoutError as exc:
            if not scope.expired():
                raise  # the function's own TimeoutError, not ours
            log.error(
                "Timeout value of %ss exceeded by function 'Functions.%s' (Id: '%s'). Initiating cancellation.%s",
                self._timeout,
                fn.name,
                invocation_id,
                "" if fn.is_async else " (a sync function keeps running in its thread until it returns)",
            )
            raise FunctionTimeoutError(
                f"Function '{fn.name}' exceeded the timeout of {self._timeout}s"
            ) from exc

    async def _write_outputs(
        self, fn: FunctionInfo, value: Any, outputs: Mapping[str, Any], binding_data: Mapping[str, Any]
    ) -> None:
        for b in fn.bindings:
            if str(b.get("direction", "")).upper() != "OUT":
                continue
            name = str(b.get("name"))
            out_value = value if name == "$return" else outputs.get(name)
            kind = str(b.get("type", "")).lower()
            if out_value is None or kind in _READ_BY_CALLER:
                continue
            handler = self._handlers.get(kind)
            if handler is None:
                if kind not in self._unhandled_warned:
                    self._unhandled_warned.add(kind)
                    log.warning(
                        "No output handler for '%s' bindings; value of '%s.%s' dropped", kind, fn.name, name
                    )
                continue
            await handler.write(b, out_value, binding_data)
