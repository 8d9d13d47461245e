"""What the runtime knows about one indexed function, and the contracts between its parts.

The indexer (`selfhost.indexing`) turns the app's `FunctionRegister` into `FunctionInfo` records;
every other part (HTTP server, durable engine, trigger listeners) works from these records and
invokes user code only through an `Invoker`. Nothing here imports app code.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

# Binding type names as they appear in function.json (case as the library writes them).
HTTP_TRIGGER = "httpTrigger"
TIMER_TRIGGER = "timerTrigger"
QUEUE_TRIGGER = "queueTrigger"
BLOB_TRIGGER = "blobTrigger"
ORCHESTRATION_TRIGGER = "orchestrationTrigger"
ACTIVITY_TRIGGER = "activityTrigger"
ENTITY_TRIGGER = "entityTrigger"
DURABLE_CLIENT = "durableClient"
QUEUE_OUTPUT = "queue"
BLOB_BINDING = "blob"
HTTP_OUTPUT = "http"


@dataclass(frozen=True)
class FunctionInfo:
    """One function of the app, as the host sees it after indexing.

    `trigger` and `bindings` are the dicts of `function.json` (enum values rendered as their
    names, e.g. "IN", "ANONYMOUS", "POST"; compare case-insensitively).
    """

    name: str
    trigger_type: str
    trigger: Mapping[str, Any]
    bindings: tuple[Mapping[str, Any], ...]
    user_function: Callable[..., Any]
    is_async: bool
    # Durable name (extension rule: trigger's activity/orchestration/entityName, else the
    # function name); None for non-durable triggers.
    durable_name: str | None = None
    # The Python __name__ of the user function: the SDK sends it when code calls a durable
    # function by reference (durable-protocol.md pitfall 14).
    python_name: str | None = None
    disabled: bool = False

    def binding(self, name: str) -> Mapping[str, Any] | None:
        for b in self.bindings:
            if b.get("name") == name:
                return b
        return None

    def bindings_of(self, type_name: str, direction: str | None = None) -> list[Mapping[str, Any]]:
        out = []
        for b in self.bindings:
            if str(b.get("type", "")).lower() != type_name.lower():
                continue
            if direction is not None and str(b.get("direction", "")).upper() != direction.upper():
                continue
            out.append(b)
        return out


@dataclass
class InvocationResult:
    """What a user function produced: its return value and the values set on `Out` bindings."""

    return_value: Any
    outputs: dict[str, Any] = field(default_factory=dict)


class Invoker(Protocol):
    """Runs user functions as the Python worker does (see durable-protocol.md §1.3).

    `trigger_kwargs` holds the trigger argument keyed by its binding name (plus any other input
    the caller already built). The invoker adds the remaining bindings itself: `durableClient`
    inputs (the client binding JSON), `Out` objects for output bindings, and an invocation
    `context` argument when the signature has one. After the call, output bindings are handed to
    the registered output handlers (queue, blob), with `binding_data` for `{name}`-style paths.
    Sync functions run in a thread pool; async ones on the host's single event loop. One log
    line per invocation. Exceptions from user code propagate after being logged.
    """

    async def invoke(
        self,
        fn: FunctionInfo,
        trigger_kwargs: dict[str, Any],
        *,
        binding_data: Mapping[str, Any] | None = None,
        positional: tuple[Any, ...] = (),
    ) -> InvocationResult: ...


class Clock(Protocol):
    """Time source; injected so timers, retries and schedules can be tested without sleeping."""

    def now(self) -> _dt.datetime:
        """Aware UTC datetime."""
        ...


class SystemClock:
    def now(self) -> _dt.datetime:
        return _dt.datetime.now(_dt.UTC)
