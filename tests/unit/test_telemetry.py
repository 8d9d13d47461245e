"""shared.telemetry with a fake `configure_azure_monitor`: called only with
APPLICATIONINSIGHTS_CONNECTION_STRING, once; the job id on spans and log records; and neither the
distro nor the OpenTelemetry SDK imported by the app's modules unless telemetry is turned on."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shared import telemetry

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
STORAGE = "UseDevelopmentStorage=true"
CONNECTION = (
    "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://example.invalid/"
)


class FakeDistro:
    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> None:
        self.calls.append(kwargs)


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A process that never configured telemetry, with the log record factory put back after."""
    monkeypatch.setattr(telemetry, "_state", telemetry._State())
    factory = logging.getLogRecordFactory()
    try:
        yield
    finally:
        logging.setLogRecordFactory(factory)


def test_without_the_setting_the_distro_is_not_called(fresh: None) -> None:
    distro = FakeDistro()

    assert telemetry.configure({"AzureWebJobsStorage": STORAGE}, configure_azure_monitor=distro) is False
    assert telemetry.configure(
        {"AzureWebJobsStorage": STORAGE, "APPLICATIONINSIGHTS_CONNECTION_STRING": "  "}, configure_azure_monitor=distro
    ) is False  # fmt: skip
    assert distro.calls == []
    assert not telemetry.enabled()


def test_with_the_setting_the_distro_is_called_once_with_it(fresh: None) -> None:
    distro = FakeDistro()
    env = {"AzureWebJobsStorage": STORAGE, "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}

    assert telemetry.configure(env, configure_azure_monitor=distro) is True
    assert telemetry.configure(env, configure_azure_monitor=distro) is True  # idempotent

    assert len(distro.calls) == 1
    assert distro.calls[0]["connection_string"] == CONNECTION
    assert [type(p).__name__ for p in distro.calls[0]["span_processors"]] == ["JobIdSpanProcessor"]
    assert telemetry.enabled()


def test_invalid_settings_leave_telemetry_off(fresh: None, caplog: pytest.LogCaptureFixture) -> None:
    distro = FakeDistro()
    env = {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION}  # no AzureWebJobsStorage

    assert telemetry.configure(env, configure_azure_monitor=distro) is False
    assert distro.calls == []
    assert "setting AzureWebJobsStorage" in caplog.text


class RecordingSpan:
    def __init__(self) -> None:
        self.attributes: dict[str, Any] = {}

    def set_attribute(self, key: str, value: Any) -> None:
        self.attributes[key] = value


def test_spans_and_log_records_started_for_a_job_carry_its_id(
    fresh: None, caplog: pytest.LogCaptureFixture
) -> None:
    distro = FakeDistro()
    telemetry.configure(
        {"AzureWebJobsStorage": STORAGE, "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION},
        configure_azure_monitor=distro,
    )
    processor = distro.calls[0]["span_processors"][0]
    inside, outside = RecordingSpan(), RecordingSpan()
    log = logging.getLogger("tests.telemetry")

    with telemetry.job_context("job-42"), caplog.at_level(logging.INFO):
        processor.on_start(inside)
        log.info("working")
    processor.on_start(outside)
    with caplog.at_level(logging.INFO):
        log.info("idle")

    assert inside.attributes == {telemetry.JOB_ID_ATTRIBUTE: "job-42"}
    assert outside.attributes == {}
    working, idle = (r for r in caplog.records if r.name == "tests.telemetry")
    assert getattr(working, telemetry.JOB_ID_ATTRIBUTE) == "job-42"
    assert not hasattr(idle, telemetry.JOB_ID_ATTRIBUTE)


@telemetry.traced_activity
def an_activity(task: dict[str, Any]) -> str | None:
    return telemetry.current_job()


@telemetry.traced_activity
async def an_async_activity(task: dict[str, Any]) -> str | None:
    return telemetry.current_job()


def test_an_activity_runs_for_the_job_of_its_input_and_keeps_its_signature(fresh: None) -> None:
    import asyncio
    import inspect

    assert an_activity({"job_id": "j1", "page": 3}) == "j1"
    assert an_activity(task={"commit": {"job_id": "j2"}, "checkpoint": {}}) == "j2"  # nested one level
    assert an_activity({"nothing": 1}) is None
    assert telemetry.current_job() is None  # reset after the call
    assert asyncio.run(an_async_activity({"job_id": "j3"})) == "j3"
    assert list(inspect.signature(an_activity).parameters) == ["task"]
    assert inspect.iscoroutinefunction(an_async_activity)


def test_an_activity_span_is_named_after_it_when_telemetry_is_on(fresh: None) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider()

    def distro(**kwargs: Any) -> None:  # what the distro does with span_processors, on our provider
        for processor in kwargs["span_processors"]:
            provider.add_span_processor(processor)
        provider.add_span_processor(SimpleSpanProcessor(exporter))

    telemetry.configure(
        {"AzureWebJobsStorage": STORAGE, "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION},
        configure_azure_monitor=distro,
    )
    tracer = provider.get_tracer("test")
    with telemetry.job_context("job-7"), tracer.start_as_current_span("azure sdk call"):
        pass

    (span,) = exporter.get_finished_spans()
    assert span.name == "azure sdk call"
    assert span.attributes == {"job.id": "job-7"}


def test_importing_the_app_modules_loads_neither_the_distro_nor_the_opentelemetry_sdk() -> None:
    # (The durable SDK imports the OpenTelemetry API itself; the SDK and the distro are ours.)
    code = (
        "import json, sys\n"
        "import function_app\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith(('azure.monitor', 'opentelemetry.sdk', 'opentelemetry.instrumentation')))))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("APPLICATIONINSIGHTS_")}
    env["AzureWebJobsStorage"] = STORAGE  # valid settings: configure() runs and finds no connection string
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == []
