"""What `GET /api/metrics` shows, as Prometheus collectors over the job store, the outbox and the
durable runtime's answer; `prometheus_client` writes the text format.

Every scrape gets its own `CollectorRegistry` (`ServiceMetrics.render`), so nothing is kept in
the library's global registry. The families, and what reading them costs:

    bulk_export_jobs{kind,state}              jobs created in the last 24 h (`WINDOW`): a RowKey
                                              range of the listing index, at most `MAX_COUNTED` rows
    bulk_export_active_jobs{kind,state}       every job not ended (queued, running, retrying): the
                                              index with a state filter, at most `MAX_COUNTED` each
    bulk_export_active_job_parts{kind,state}  the parts of those jobs, by part state
    bulk_export_active_job_bytes{kind}        bytes those jobs have moved so far
    bulk_export_retrying_parts{kind}          their parts waiting out a retry
    bulk_export_mail_backlog{state}           outcome mails pending, sending or dead (index rows
                                              of the outbox, at most `MAX_COUNTED` per state)
    bulk_export_orchestrations{name,status}   durable instances Pending or Running (one query)
    bulk_export_*_up, bulk_export_job_metrics_capped   whether each source could be read, and
                                              whether a count stopped at its cap
    bulk_export_http_requests_total, bulk_export_http_request_duration_seconds  (per process,
                                              `shared.request_metrics`)

Parts and bytes are those of jobs that have not ended (one job view each, at most
`MAX_VIEWED`): a store-wide figure every instance reports alike, where a per-process counter of
bytes moved would only count the activities that ran in the scraped instance and restart from
zero with it. A finished job's totals are in its status document and its outcome mail.

Reading the store is cached for `CACHE_SECONDS` per process (`CachedCollector`), so several
scrapers, or a tight scrape interval, cost one read per period. A source that fails is reported
with its `_up` gauge at 0 (and a warning logged), never as a failed scrape.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, Generic, TypeVar

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from shared import request_metrics
from shared.errors import ExportError
from shared.jobs import JobState
from shared.jobstore import JobStore, JobView, ListQuery
from shared.outbox import Outbox, OutboxState

__all__ = [
    "ACTIVE_STATES",
    "BACKLOG_STATES",
    "CACHE_SECONDS",
    "CachedCollector",
    "JobStoreCollector",
    "MailBacklogCollector",
    "OrchestrationCollector",
    "ServiceMetrics",
    "Ttl",
    "render",
]

log = logging.getLogger(__name__)

WINDOW: Final = dt.timedelta(hours=24)
MAX_COUNTED: Final = 10_000  # index rows read per count at most (ten pages of the table service)
MAX_VIEWED: Final = 200  # active jobs whose parts are read at most
CACHE_SECONDS: Final = 15.0  # a common scrape interval: every scrape sees a fresh enough figure
_PAGE: Final = 1000  # the table service's largest page
ACTIVE_STATES: Final = (JobState.QUEUED, JobState.RUNNING, JobState.RETRYING)
BACKLOG_STATES: Final = (OutboxState.PENDING, OutboxState.SENDING, OutboxState.DEAD)

T = TypeVar("T")
Instances = Sequence[tuple[str, str]]  # (orchestrator name, runtime status) per instance


class Ttl(Generic[T]):
    """One value kept for `seconds` after it was put (thread-safe; the clock is injectable)."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._seconds = seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._value: tuple[float, T] | None = None

    def get(self) -> T | None:
        with self._lock:
            if self._value is None or self._clock() - self._value[0] >= self._seconds:
                return None
            return self._value[1]

    def put(self, value: T) -> None:
        with self._lock:
            self._value = (self._clock(), value)


class CachedCollector:
    """Serves an inner collector's families for `ttl` seconds after reading them."""

    def __init__(self, inner: Collector, ttl: Ttl[list[Any]]) -> None:
        self._inner = inner
        self._ttl = ttl
        self._lock = threading.Lock()  # one read at a time: concurrent scrapes share it

    def collect(self) -> Iterable[Any]:
        with self._lock:
            families = self._ttl.get()
            if families is None:
                families = list(self._inner.collect())
                self._ttl.put(families)
            return list(families)


def _gauge(
    name: str, documentation: str, labels: Sequence[str], values: Mapping[Any, float]
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=list(labels))
    for key, value in sorted(values.items()):
        family.add_metric(list(key) if isinstance(key, tuple) else [key], value)
    return family


def _up(name: str, what: str, up: bool) -> GaugeMetricFamily:
    return GaugeMetricFamily(
        name, f"1 when {what} could be read for this scrape, else 0.", value=1 if up else 0
    )


def _stamp(instant: dt.datetime) -> str:
    return instant.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")  # the records' `created` format


@dataclass
class _JobFigures:
    recent: Counter[tuple[str, str]]
    active: Counter[tuple[str, str]]
    parts: Counter[tuple[str, str]]
    moved: Counter[str]
    retrying: Counter[str]
    capped: bool = False


class JobStoreCollector:
    """Jobs by kind and state, and the parts and bytes of the jobs not ended (see the module doc)."""

    def __init__(
        self,
        jobs: JobStore,
        *,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC),
        max_counted: int = MAX_COUNTED,
        max_viewed: int = MAX_VIEWED,
    ) -> None:
        self._jobs = jobs
        self._now = now
        self._max_counted = max_counted
        self._max_viewed = max_viewed

    def collect(self) -> Iterable[Any]:
        try:
            figures = self._read()
        except ExportError as exc:  # storage_errors: the store's failures, transient or not
            log.warning("Metrics: the job store could not be read: %s", exc)
            return [_up("bulk_export_job_store_up", "the job store", False)]
        return [
            _gauge("bulk_export_jobs", "Jobs created in the last 24 hours, by kind and state.",
                   ("kind", "state"), figures.recent),
            _gauge("bulk_export_active_jobs", "Jobs not ended (queued, running, retrying), by kind and state.",
                   ("kind", "state"), figures.active),
            _gauge("bulk_export_active_job_parts", "Parts of the jobs not ended, by kind and part state.",
                   ("kind", "state"), figures.parts),
            _gauge("bulk_export_active_job_bytes", "Bytes moved so far by the jobs not ended, by kind.",
                   ("kind",), figures.moved),
            _gauge("bulk_export_retrying_parts", "Parts of the jobs not ended that wait to be retried, by kind.",
                   ("kind",), figures.retrying),
            GaugeMetricFamily("bulk_export_job_metrics_capped",
                              "1 when a job count stopped at its cap (the figures are lower bounds).",
                              value=1 if figures.capped else 0),
            _up("bulk_export_job_store_up", "the job store", True),
        ]  # fmt: skip

    def _read(self) -> _JobFigures:
        since = ListQuery(created_from=_stamp(self._now() - WINDOW))
        recent, _, capped = self._count(since)
        figures = _JobFigures(recent, Counter(), Counter(), Counter(), Counter(), capped)
        viewed: list[str] = []
        for state in ACTIVE_STATES:
            counts, ids, capped = self._count(ListQuery(state=state.value))
            figures.active.update(counts)
            figures.capped |= capped
            viewed += ids[: self._max_viewed - len(viewed)]
        for job_id in viewed:
            view = self._jobs.view(job_id)
            if view is not None:
                _add_parts(figures, view)
        return figures

    def _count(self, query: ListQuery) -> tuple[Counter[tuple[str, str]], list[str], bool]:
        """Jobs by (kind, state) through the listing index, and the ids of the first ones."""
        counts: Counter[tuple[str, str]] = Counter()
        ids: list[str] = []
        continuation: str | None = None
        while True:
            limit = min(_PAGE, self._max_counted - sum(counts.values()))
            page = self._jobs.list(replace(query, limit=limit, continuation=continuation))
            for job in page.jobs:
                counts[(job.kind, job.state)] += 1
                if len(ids) < self._max_viewed:
                    ids.append(job.job_id)
            continuation = page.continuation
            if continuation is None:
                return counts, ids, False
            if sum(counts.values()) >= self._max_counted:
                return counts, ids, True


def _add_parts(figures: _JobFigures, view: JobView) -> None:
    """One job's parts by state and bytes moved, from its kind's status document."""
    from shared.job_api import present  # the kinds' modules import the job store, as we do

    kind = str(view.record.get("kind") or "fhir-export")
    try:
        document = present(view)
    except (KeyError, TypeError, ValueError) as exc:  # a record of an older shape: skip it
        log.warning("Metrics: job %s could not be summarised (%s)", view.record.get("id"), type(exc).__name__)
        return
    states, moved = part_figures(document)
    for state, count in states.items():
        figures.parts[(kind, state)] += count
    figures.moved[kind] += moved
    figures.retrying[kind] += states.get("retrying", 0)


def part_figures(document: Mapping[str, Any]) -> tuple[Counter[str], int]:
    """Parts by state and bytes moved, from a status document of any kind: an export's
    `progress` (one part per resource type), or a batch's or session's `counts` and `bytes`."""
    progress = document.get("progress")
    if isinstance(progress, Mapping):
        parts = list(progress.values())
        states = Counter(str(p.get("state") or "queued") for p in parts)
        return states, sum(int(p.get("bytes") or 0) for p in parts)
    counts = document.get("counts") or {}
    states = Counter({str(k): int(v) for k, v in counts.items() if k != "items" and int(v) > 0})
    return states, int((document.get("bytes") or {}).get("done") or 0)


class MailBacklogCollector:
    """Outcome mails not yet sent, by outbox state (dead ones wait for an operator)."""

    def __init__(self, outbox: Outbox, *, max_counted: int = MAX_COUNTED) -> None:
        self._outbox = outbox
        self._max_counted = max_counted

    def collect(self) -> Iterable[Any]:
        try:
            backlog = {state.value: self._outbox.count(state, self._max_counted) for state in BACKLOG_STATES}
        except ExportError as exc:
            log.warning("Metrics: the mail outbox could not be read: %s", exc)
            return [_up("bulk_export_outbox_up", "the mail outbox", False)]
        documentation = f"Outcome mails not sent, by outbox state (counted up to {self._max_counted})."
        return [
            _gauge("bulk_export_mail_backlog", documentation, ("state",), backlog),
            _up("bulk_export_outbox_up", "the mail outbox", True),
        ]


class OrchestrationCollector:
    """Durable instances Pending or Running, by orchestrator name: the work the runtime has."""

    def __init__(self, instances: Instances | None) -> None:
        self._instances = instances  # None: the durable runtime did not answer

    def collect(self) -> Iterable[Any]:
        if self._instances is None:
            return [_up("bulk_export_durable_up", "the durable runtime", False)]
        backlog = Counter((name, status) for name, status in self._instances)
        return [
            _gauge("bulk_export_orchestrations", "Orchestration instances Pending or Running, by name and status.",
                   ("name", "status"), backlog),
            _up("bulk_export_durable_up", "the durable runtime", True),
        ]  # fmt: skip


def render(collectors: Iterable[Collector]) -> bytes:
    """The Prometheus text format (0.0.4) of `collectors`, through a registry of this call only."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return generate_latest(registry)


class ServiceMetrics:
    """The process-wide collectors and caches of `GET /api/metrics` (built once, at the edge)."""

    def __init__(self, jobs: JobStore, outbox: Outbox, *, cache_seconds: float = CACHE_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.jobs = CachedCollector(JobStoreCollector(jobs), Ttl(cache_seconds, clock))
        self.mail = CachedCollector(MailBacklogCollector(outbox), Ttl(cache_seconds, clock))
        # The durable runtime's last answer; a failed query is not kept, the next scrape asks again.
        self.orchestrations: Ttl[Instances] = Ttl(cache_seconds, clock)

    def render(self, instances: Instances | None) -> bytes:
        """Blocking (the store is read here when the cache is stale): run it in a worker thread."""
        requests = (request_metrics.REQUESTS, request_metrics.REQUEST_SECONDS)
        return render([self.jobs, self.mail, OrchestrationCollector(instances), *requests])
