"""shared.metrics over the in-memory job store and outbox, and shared.request_metrics: what each
family counts, the window and the caps, the cache, a failing source, and the text format as
Prometheus parses it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared.errors import TransientError
from shared.jobstore import JobKind, JobPage, ListQuery, MemoryJobStore, new_record
from shared.metrics import (
    CachedCollector,
    JobStoreCollector,
    MailBacklogCollector,
    OrchestrationCollector,
    ServiceMetrics,
    Ttl,
    part_figures,
    render,
)
from shared.outbox import MemoryOutbox, OutboxEntry
from shared.request_metrics import REQUEST_SECONDS, REQUESTS, function_label, measured

pytestmark = pytest.mark.unit

NOW = dt.datetime(2026, 5, 1, 12, 0, tzinfo=dt.UTC)
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: bytes | str) -> Samples:
    """Every sample of a scrape as Prometheus reads it: (name, labels) -> value."""
    decoded = text.decode() if isinstance(text, bytes) else text
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(decoded)
        for s in family.samples
    }


def value(found: Samples, metric: str, **labels: str) -> float | None:
    return found.get((metric, frozenset(labels.items())))


def scrape(*collectors: Any) -> Samples:
    return samples(render(collectors))


def stamp(instant: dt.datetime) -> str:
    return instant.strftime("%Y-%m-%dT%H:%M:%SZ")


def export_job(
    store: MemoryJobStore,
    job_id: str,
    state: str,
    parts: dict[str, dict[str, Any]],
    created: dt.datetime = NOW,
) -> None:
    request = {"source": {"kind": "fhir", "types": list(parts)}, "destination": {"kind": "blob"}}
    record = new_record(job_id, JobKind.FHIR_EXPORT, request, "a@example.com", {})
    store.put_record({**record, "state": state, "created": stamp(created)})
    for name, progress in parts.items():
        if progress:
            store.put_part(job_id, name, progress)


def batch_job(
    store: MemoryJobStore,
    job_id: str,
    state: str,
    parts: list[dict[str, Any] | None],
    created: dt.datetime = NOW,
) -> None:
    items = [f"scan-{i}.dcm" for i in range(len(parts))]
    record = new_record(job_id, JobKind.BATCH, {"source": {"kind": "blob"}}, "t@example.com", {}, items=items)
    store.put_record({**record, "state": state, "created": stamp(created)})
    for index, progress in enumerate(parts):
        if progress is not None:
            store.put_part(job_id, f"item-{index:05d}", progress)


def collector(store: Any, **kwargs: Any) -> JobStoreCollector:
    return JobStoreCollector(store, now=lambda: NOW, **kwargs)


# -- jobs --------------------------------------------------------------------------------------


def test_jobs_by_kind_and_state_in_the_window_and_every_active_one() -> None:
    store = MemoryJobStore()
    export_job(store, "e1", "succeeded", {"Patient": {"state": "succeeded", "bytes": 10}})
    export_job(store, "e2", "failed", {"Patient": {"state": "failed"}})
    batch_job(store, "b1", "succeeded", [{"state": "succeeded", "bytes_done": 5}])
    # Two days old: outside the window, but a running job is counted as active at any age.
    export_job(store, "old-done", "succeeded", {"Patient": {}}, created=NOW - dt.timedelta(days=2))
    batch_job(store, "old-running", "running", [None], created=NOW - dt.timedelta(days=2))

    found = scrape(collector(store))

    assert value(found, "bulk_export_jobs", kind="fhir-export", state="succeeded") == 1
    assert value(found, "bulk_export_jobs", kind="fhir-export", state="failed") == 1
    assert value(found, "bulk_export_jobs", kind="batch", state="succeeded") == 1
    assert value(found, "bulk_export_jobs", kind="batch", state="running") is None
    assert value(found, "bulk_export_active_jobs", kind="batch", state="running") == 1
    assert value(found, "bulk_export_active_jobs", kind="fhir-export", state="succeeded") is None
    assert value(found, "bulk_export_job_metrics_capped") == 0
    assert value(found, "bulk_export_job_store_up") == 1


def test_parts_bytes_and_retries_are_those_of_jobs_not_ended() -> None:
    store = MemoryJobStore()
    export_job(store, "e1", "running", {
        "Patient": {"state": "succeeded", "bytes": 1000},
        "Observation": {"state": "retrying", "bytes": 200, "consecutive_failures": 2},
        "Encounter": {},
    })  # fmt: skip
    batch_job(store, "b1", "retrying", [
        {"state": "succeeded", "bytes_done": 300},
        {"state": "retrying", "bytes_done": 40},
        None,
    ])  # fmt: skip
    batch_job(store, "b2", "succeeded", [{"state": "succeeded", "bytes_done": 99_999}])  # ended: not counted

    found = scrape(collector(store))

    assert value(found, "bulk_export_active_job_parts", kind="fhir-export", state="succeeded") == 1
    assert value(found, "bulk_export_active_job_parts", kind="fhir-export", state="retrying") == 1
    assert value(found, "bulk_export_active_job_parts", kind="fhir-export", state="queued") == 1
    assert value(found, "bulk_export_active_job_parts", kind="batch", state="queued") == 1
    assert value(found, "bulk_export_active_job_bytes", kind="fhir-export") == 1200
    assert value(found, "bulk_export_active_job_bytes", kind="batch") == 340
    assert value(found, "bulk_export_retrying_parts", kind="fhir-export") == 1
    assert value(found, "bulk_export_retrying_parts", kind="batch") == 1


def test_counts_stop_at_their_cap_and_say_so() -> None:
    store = MemoryJobStore()
    for n in range(7):
        batch_job(store, f"b{n}", "queued", [None])

    found = scrape(collector(store, max_counted=3, max_viewed=2))

    assert value(found, "bulk_export_jobs", kind="batch", state="queued") == 3
    assert value(found, "bulk_export_active_jobs", kind="batch", state="queued") == 3
    assert value(found, "bulk_export_active_job_parts", kind="batch", state="queued") == 2  # two viewed
    assert value(found, "bulk_export_job_metrics_capped") == 1


class PagingStore(MemoryJobStore):
    """Records the page sizes asked for, so the cost of a count can be checked."""

    def __init__(self) -> None:
        super().__init__()
        self.limits: list[int] = []

    def list(self, query: ListQuery) -> JobPage:
        self.limits.append(query.limit)
        return super().list(query)


def test_counting_reads_whole_pages_of_the_index_and_no_records() -> None:
    store = PagingStore()
    for n in range(3):
        export_job(store, f"e{n}", "succeeded", {"Patient": {}})

    scrape(collector(store))

    assert store.limits == [1000, 1000, 1000, 1000]  # the window, then queued, running, retrying


class FailingStore(MemoryJobStore):
    def list(self, query: ListQuery) -> JobPage:
        raise TransientError("list jobs jobindex: storage unreachable (ServiceRequestError)")


def test_a_store_that_cannot_be_read_is_down_not_a_failed_scrape() -> None:
    found = scrape(collector(FailingStore()))

    assert value(found, "bulk_export_job_store_up") == 0
    assert not [name for name, _ in found if name == "bulk_export_jobs"]


def test_part_figures_read_every_kind_of_status_document() -> None:
    export = {"progress": {"Patient": {"state": "running", "bytes": 7}, "Condition": {"state": "queued"}}}
    batch = {"counts": {"items": 4, "succeeded": 3, "failed": 1}, "bytes": {"done": 12, "total": 20}}

    assert part_figures(export) == ({"running": 1, "queued": 1}, 7)
    assert part_figures(batch) == ({"succeeded": 3, "failed": 1}, 12)


# -- mail and orchestrations -------------------------------------------------------------------


def entry(key: str) -> OutboxEntry:
    return OutboxEntry.new(key=key, job_id="j", to=["a@example.com"], subject="s", message="m",
                           message_id=f"<{key}@example.com>", now=NOW)  # fmt: skip


def test_mail_backlog_by_outbox_state() -> None:
    outbox = MemoryOutbox()
    for key in ("p1", "p2", "s1", "d1", "ok"):
        outbox.add(entry(key))
    outbox.claim("s1", NOW)
    outbox.claim("d1", NOW)
    outbox.mark_failed("d1", NOW, "550 no", permanent=True, schedule=[30])
    outbox.claim("ok", NOW)
    outbox.mark_sent("ok", NOW)

    found = scrape(MailBacklogCollector(outbox))

    assert value(found, "bulk_export_mail_backlog", state="pending") == 2
    assert value(found, "bulk_export_mail_backlog", state="sending") == 1
    assert value(found, "bulk_export_mail_backlog", state="dead") == 1
    assert value(found, "bulk_export_mail_backlog", state="sent") is None  # not backlog
    assert value(found, "bulk_export_outbox_up") == 1
    assert outbox.count(entry("x").state, 1) == 1  # counting stops at its limit


def test_orchestration_backlog_by_name_and_status() -> None:
    instances = [("export_job", "Running"), ("export_type", "Running"), ("export_type", "Running"),
                 ("batch_job", "Pending")]  # fmt: skip
    found = scrape(OrchestrationCollector(instances))

    assert value(found, "bulk_export_orchestrations", name="export_type", status="Running") == 2
    assert value(found, "bulk_export_orchestrations", name="batch_job", status="Pending") == 1
    assert value(found, "bulk_export_durable_up") == 1
    assert value(scrape(OrchestrationCollector(None)), "bulk_export_durable_up") == 0


# -- cache and rendering -----------------------------------------------------------------------


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now


class CountingCollector:
    def __init__(self, make: Callable[[], Iterable[Any]]) -> None:
        self.make = make
        self.reads = 0

    def collect(self) -> Iterable[Any]:
        self.reads += 1
        return list(self.make())


def test_the_store_is_read_once_per_cache_period() -> None:
    store = MemoryJobStore()
    clock = Clock()
    inner = CountingCollector(collector(store).collect)
    cached = CachedCollector(inner, Ttl(15, clock))

    scrape(cached)
    export_job(store, "e1", "running", {"Patient": {}})
    stale = scrape(cached)
    clock.now += 15
    fresh = scrape(cached)

    assert inner.reads == 2
    assert value(stale, "bulk_export_active_jobs", kind="fhir-export", state="running") is None
    assert value(fresh, "bulk_export_active_jobs", kind="fhir-export", state="running") == 1


def test_every_scrape_has_its_own_registry_and_the_request_metrics() -> None:
    service = ServiceMetrics(MemoryJobStore(), MemoryOutbox())
    first, second = service.render([]), service.render([("export_job", "Running")])  # no duplicate error

    names = {family.name for family in text_string_to_metric_families(second.decode())}
    assert {"bulk_export_jobs", "bulk_export_mail_backlog", "bulk_export_orchestrations",
            "bulk_export_http_requests", "bulk_export_http_request_duration_seconds"} <= names  # fmt: skip
    assert b"# TYPE bulk_export_http_requests_total counter" in first
    assert value(samples(first), "bulk_export_durable_up") == 1


# -- request metrics ---------------------------------------------------------------------------


@dataclass
class Response:
    status_code: int


@measured
async def mapper(call: Callable[[], Any]) -> Response:
    """Like http_api.exports.guarded: maps one error, lets others through."""
    try:
        response: Response = await call()
        return response
    except ValueError:
        return Response(400)


def count(function: str, status: str) -> float:
    found = samples(render([REQUESTS]))
    return value(found, "bulk_export_http_requests_total", function=function, status=status) or 0.0


def observations(function: str) -> float:
    found = samples(render([REQUEST_SECONDS]))
    return value(found, "bulk_export_http_request_duration_seconds_count", function=function) or 0.0


def unit_get_thing(status: int) -> Callable[[], Any]:
    async def run() -> Response:
        return Response(status)

    return run


def unit_post_thing() -> Callable[[], Any]:
    async def run() -> Response:
        raise ValueError("bad field")

    return run


def unit_broken_thing() -> Callable[[], Any]:
    async def run() -> Response:
        raise RuntimeError("bug")

    return run


def unit_nested_thing() -> Callable[[], Any]:
    async def outer() -> Response:
        return await mapper(unit_get_thing(201))  # the front door maps errors twice

    return outer


def test_requests_are_counted_by_function_and_status_and_timed() -> None:
    before = (count("unit_get_thing", "200"), count("unit_post_thing", "400"), observations("unit_get_thing"))

    asyncio.run(mapper(unit_get_thing(200)))
    asyncio.run(mapper(unit_get_thing(200)))
    asyncio.run(mapper(unit_post_thing()))

    assert count("unit_get_thing", "200") == before[0] + 2
    assert count("unit_post_thing", "400") == before[1] + 1
    assert observations("unit_get_thing") == before[2] + 2


def test_an_error_let_through_counts_as_500_and_nested_calls_count_once() -> None:
    broken, nested, inner = (
        count("unit_broken_thing", "500"),
        count("unit_nested_thing", "201"),
        count("unit_get_thing", "201"),
    )

    with pytest.raises(RuntimeError):
        asyncio.run(mapper(unit_broken_thing()))
    asyncio.run(mapper(unit_nested_thing()))

    assert count("unit_broken_thing", "500") == broken + 1
    assert count("unit_nested_thing", "201") == nested + 1
    assert count("unit_get_thing", "201") == inner  # the inner call was not counted again


async def _private_helper() -> Response:
    return Response(200)


def test_function_labels_name_the_http_function_or_the_module() -> None:
    assert function_label(unit_get_thing(200)) == "unit_get_thing"
    assert function_label(_private_helper) == "test_metrics"
