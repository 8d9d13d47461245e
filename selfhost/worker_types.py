"""The worker-side objects user code receives besides its trigger: `Out` bindings and `context`.

Equivalents of the Python worker's `bindings.Out` and `bindings.Context` (durable-protocol.md
§1.3), implementing the abstract types of `azure.functions` so `isinstance` checks and type
hints in apps keep working. No I/O; the invoker builds one set per invocation.
"""

from __future__ import annotations

import threading
from typing import Any

import azure.functions as func
from azure.functions import _abc

__all__ = ["InvocationContext", "Out", "RetryInfo", "TraceInfo"]


class Out(func.Out[Any]):
    """An output binding's value holder: the function calls `set`, the host reads `get` afterwards."""

    def __init__(self) -> None:
        self._value: Any = None

    def set(self, val: Any) -> None:
        self._value = val

    def get(self) -> Any:
        return self._value


class TraceInfo(_abc.TraceContext):
    """Distributed-tracing context; empty locally (there is no upstream Functions host)."""

    def __init__(self, trace_parent: str = "", trace_state: str = "") -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class RetryInfo(_abc.RetryContext):
    """`context.retry_context`: which attempt this is under an `@app.retry` policy (0 = first)."""

    def __init__(self, retry_count: int = 0, max_retry_count: int = 0, exception: Any = None) -> None:
        self._count, self._max, self._exc = retry_count, max_retry_count, exception

    @property
    def retry_count(self) -> int:
        return self._count

    @property
    def max_retry_count(self) -> int:
        return self._max

    @property
    def exception(self) -> Any:
        return self._exc


class InvocationContext(func.Context):
    """The `context` argument of a function whose signature asks for one."""

    def __init__(
        self,
        *,
        invocation_id: str,
        function_name: str,
        function_directory: str,
        trace_context: TraceInfo | None = None,
        retry_context: RetryInfo | None = None,
    ) -> None:
        self._invocation_id = invocation_id
        self._function_name = function_name
        self._function_directory = function_directory
        self._trace = trace_context or TraceInfo()
        self._retry = retry_context or RetryInfo()
        self._tls = threading.local()
        self._tls.invocation_id = invocation_id

    @property
    def invocation_id(self) -> str:
        return self._invocation_id

    @property
    def thread_local_storage(self) -> Any:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._function_name

    @property
    def function_directory(self) -> str:
        return self._function_directory

    @property
    def trace_context(self) -> TraceInfo:
        return self._trace

    @property
    def retry_context(self) -> RetryInfo:
        return self._retry
