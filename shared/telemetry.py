"""Traces and logs of the app's code to Azure Monitor, each carrying the job id it works for.

`configure(env)` turns the Azure Monitor OpenTelemetry distro on when
APPLICATIONINSIGHTS_CONNECTION_STRING is set (read by `Settings`), once per process; without it
nothing is imported or installed, so a local run and the tests never load `azure.monitor`. The
exporter authenticates as APPLICATIONINSIGHTS_AUTHENTICATION_STRING says (the managed identity
in Azure; the exporter reads that setting itself).

The job id travels in a context variable set by `job_context` (a block: an activity, a timer's
turn over one job) or `tag_job` (the rest of the current task: an HTTP request about one job).
While it is set, every span started (the activity's own, the Azure SDK's storage and Key Vault
calls, outbound HTTP through `requests`/`urllib3`) gets the attribute `job.id` from a span
processor, and every log record gets it as a record attribute, which the distro's log handler
sends as a custom dimension. `traced_activity` wraps an activity function in a span named after
it, with the job id of its input. Without telemetry these helpers only set the variable.

Never call `configure` at import time: the composition root calls it once at start-up.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final, TypeVar, cast

from shared.config import Settings, SettingsError

__all__ = [
    "JOB_ID_ATTRIBUTE",
    "configure",
    "current_job",
    "enabled",
    "job_context",
    "job_id_of",
    "tag_job",
    "traced_activity",
]

log = logging.getLogger(__name__)

JOB_ID_ATTRIBUTE: Final = "job.id"
_TRACER: Final = "bulk_export"

_job: contextvars.ContextVar[str | None] = contextvars.ContextVar("bulk_export_job_id", default=None)
F = TypeVar("F", bound=Callable[..., Any])


class _State:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.enabled = False


_state = _State()


def enabled() -> bool:
    return _state.enabled


def current_job() -> str | None:
    return _job.get()


def configure(env: Mapping[str, str], *, configure_azure_monitor: Callable[..., None] | None = None) -> bool:
    """Send traces and logs to Azure Monitor if APPLICATIONINSIGHTS_CONNECTION_STRING is set.

    True when telemetry is on (now or from an earlier call; later calls change nothing).
    `configure_azure_monitor` replaces the distro's function (tests). Invalid settings leave
    telemetry off with a warning: the health endpoint names the setting, and the Functions host
    still reports the app's failures itself.
    """
    with _state.lock:
        if _state.enabled:
            return True
        try:
            settings = Settings.from_env(env)
        except SettingsError as exc:
            log.warning("Telemetry to Azure Monitor is off: %s", exc)
            return False
        connection = settings.applicationinsights_connection_string
        if connection is None:
            return False
        if configure_azure_monitor is None:
            # Imported only here: the distro's import pulls in the OpenTelemetry SDK and every
            # instrumentation it bundles.
            from azure.monitor.opentelemetry import configure_azure_monitor as distro

            configure_azure_monitor = distro
        configure_azure_monitor(connection_string=connection, span_processors=[_job_span_processor()])
        _install_log_record_factory()
        _state.enabled = True
    log.info("Telemetry to Azure Monitor is on")
    return True


def _job_span_processor() -> Any:
    """A span processor that puts the current job id on every span started while it is set."""
    from opentelemetry.sdk.trace import SpanProcessor

    class JobIdSpanProcessor(SpanProcessor):
        def on_start(self, span: Any, parent_context: Any = None) -> None:
            job_id = _job.get()
            if job_id is not None:
                span.set_attribute(JOB_ID_ATTRIBUTE, job_id)

    return JobIdSpanProcessor()


def _install_log_record_factory() -> None:
    """Every log record made while a job id is set carries it (attribute `job.id`)."""
    previous = logging.getLogRecordFactory()

    def with_job(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        job_id = _job.get()
        if job_id is not None:
            setattr(record, JOB_ID_ATTRIBUTE, job_id)
        return record

    logging.setLogRecordFactory(with_job)


def _set_span_attribute(job_id: str) -> None:
    from opentelemetry import trace

    trace.get_current_span().set_attribute(JOB_ID_ATTRIBUTE, job_id)


def tag_job(job_id: str) -> None:
    """The rest of the current task (an HTTP request, a trigger) works for `job_id`; the current
    span, if any, is tagged too. Each invocation runs in its own task, so this ends with it."""
    _job.set(job_id)
    if _state.enabled:
        _set_span_attribute(job_id)


@contextlib.contextmanager
def job_context(job_id: str | None, span_name: str | None = None) -> Iterator[None]:
    """The block works for `job_id`; with `span_name` and telemetry on, in a span of that name."""
    token = _job.set(job_id)
    try:
        if span_name is not None and _state.enabled:
            from opentelemetry import trace

            attributes = {JOB_ID_ATTRIBUTE: job_id} if job_id is not None else {}
            with trace.get_tracer(_TRACER).start_as_current_span(span_name, attributes=attributes):
                yield
        else:
            yield
    finally:
        _job.reset(token)


def job_id_of(payload: object) -> str | None:
    """The job id of an activity's input: its `job_id`, or that of a contract nested one level
    (a commit task inside `CommitAndRecord`)."""
    if not isinstance(payload, Mapping):
        return None
    found = payload.get("job_id")
    if isinstance(found, str):
        return found
    for value in payload.values():
        if isinstance(value, Mapping) and isinstance(value.get("job_id"), str):
            return str(value["job_id"])
    return None


def traced_activity(function: F) -> F:
    """Run an activity in a span `activity <name>` carrying the job id of its input. Put it under
    the trigger decorator: `functools.wraps` keeps the signature the bindings are checked against."""
    name = f"activity {function.__name__}"

    def job_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
        return next((j for j in map(job_id_of, (*args, *kwargs.values())) if j is not None), None)

    if inspect.iscoroutinefunction(function):

        @functools.wraps(function)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            with job_context(job_of(args, kwargs), name):
                return await function(*args, **kwargs)

        return cast(F, run_async)

    @functools.wraps(function)
    def run(*args: Any, **kwargs: Any) -> Any:
        with job_context(job_of(args, kwargs), name):
            return function(*args, **kwargs)

    return cast(F, run)
