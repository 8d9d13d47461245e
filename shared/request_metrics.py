"""Request counts and latencies of the HTTP API, per process, for `GET /api/metrics`.

`measured` wraps the HTTP adapters' shared error mapper (`http_api.exports.guarded`): each call
is one request, labelled with the HTTP function it serves and the status it answered. The
function's name stands for its route and method (`get_export` is GET /api/exports/{id}); it is
the name of the closure's enclosing function, so no adapter passes anything. The FHIR front door
wraps its handlers in private helpers, so its requests are labelled `fhir` together. Nested
calls (the front door maps errors twice) count once, at the outermost.

The metric objects are process-wide (a Counter and a Histogram that belong to no registry);
each scrape registers them in its own `CollectorRegistry`. Counts start at zero in every process
and grow until it ends, as Prometheus counters do. Framework-free: a response is anything with a
`status_code`.
"""

from __future__ import annotations

import contextvars
import functools
import time
from collections.abc import Awaitable, Callable
from typing import Final, Protocol, TypeVar

from prometheus_client import Counter, Histogram

__all__ = ["REQUESTS", "REQUEST_SECONDS", "function_label", "measured", "observe"]

# Seconds: from a status read (tens of milliseconds) to a submission that stores secrets and
# starts an orchestration (a few seconds), with room for a slow dependency.
_BUCKETS: Final = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

REQUESTS: Final = Counter(
    "bulk_export_http_requests",
    "HTTP requests answered by this process, by function (route and method) and status code.",
    ["function", "status"],
    registry=None,
)
REQUEST_SECONDS: Final = Histogram(
    "bulk_export_http_request_duration_seconds",
    "Time to answer an HTTP request in this process, by function (route and method).",
    ["function"],
    buckets=_BUCKETS,
    registry=None,
)

_measuring: contextvars.ContextVar[bool] = contextvars.ContextVar("bulk_export_measuring", default=False)


class _Response(Protocol):
    @property
    def status_code(self) -> int: ...


R = TypeVar("R", bound=_Response)
Handler = Callable[[], Awaitable[R]]


def function_label(call: Callable[..., object]) -> str:
    """The HTTP function a handler closure belongs to: `submit_export.<locals>.<lambda>` is
    `submit_export`; a private helper's or a module-level lambda's is its module's last part."""
    head = getattr(call, "__qualname__", "").split(".", 1)[0]
    if head and not head.startswith(("_", "<")):
        return head
    module: str = getattr(call, "__module__", None) or "unknown"
    return module.rsplit(".", 1)[-1]


def observe(function: str, status: int, seconds: float) -> None:
    REQUESTS.labels(function=function, status=str(status)).inc()
    REQUEST_SECONDS.labels(function=function).observe(seconds)


def measured(wrapper: Callable[[Handler[R]], Awaitable[R]]) -> Callable[[Handler[R]], Awaitable[R]]:
    """Decorate the adapters' error mapper: count and time each request it answers. An error it
    lets through is counted as 500, the answer the host then gives."""

    @functools.wraps(wrapper)
    async def measuring(call: Handler[R]) -> R:
        if _measuring.get():
            return await wrapper(call)
        token = _measuring.set(True)
        started, status = time.perf_counter(), 500
        try:
            response = await wrapper(call)
            status = response.status_code
            return response
        finally:
            _measuring.reset(token)
            observe(function_label(call), status, time.perf_counter() - started)

    return measuring
