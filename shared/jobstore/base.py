"""The job store role: every kind of job's record, its parts' progress, its cancel marker, a listing.

One record shape for every kind (`fhir-export`, `batch`, `session`): `id`, `kind`, `state` (the
table of `shared.jobs`), `requested_by`, `labels`, `created`/`updated`/`started`/`finished`,
`submitted` (its place in line), `attempts`, `last_error`, `outcome`, `admission` (whether its
run may start under the caps on running jobs, or why it waits), and the kind's `request`. A
job's work is split in *parts* (a FHIR resource type, a file of a batch), each with its own
progress document (`state`, counters, `last_error`, kind-specific details) written by the one
activity working on it.

Records change through typed `JobUpdate`s, where the state table is enforced, so a late or
replayed write cannot move a job backwards. Implementations: `azure.AzureJobStore` (records in
blobs, parts and the listing index in tables) and `memory.MemoryJobStore` (tests). Never
imports the Functions libraries.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any, Final, Protocol, runtime_checkable

from shared.jobs import JobState, require_transition

__all__ = [
    "DEFAULT_KIND",
    "INDEXED_LABELS",
    "JobKind",
    "JobPage",
    "JobStore",
    "JobSummary",
    "JobUpdate",
    "JobView",
    "ListQuery",
    "OpenJob",
    "PartUpdate",
    "new_record",
    "open_job_of",
    "index_key",
    "summary_of",
    "utc_now",
]


class JobKind(StrEnum):
    FHIR_EXPORT = "fhir-export"
    BATCH = "batch"
    SESSION = "session"


DEFAULT_KIND: Final = JobKind.FHIR_EXPORT  # records written before kinds existed
# Labels a listing can filter on without scanning every job: the store keeps an index partition
# per value (a study's sessions, a session's jobs). Other labels are matched on the rows read.
INDEXED_LABELS: Final = frozenset({"study", "session"})


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _fine(moment: dt.datetime) -> str:
    """An instant to the microsecond (`submitted`): jobs queued within one second keep their order."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class JobUpdate:
    """A change to a job record; fields left None stay as they are."""

    state: JobState | None = None
    attempts: int | None = None
    last_error: str | None = None
    started: str | None = None
    finished: str | None = None
    outcome: Mapping[str, Any] | None = None
    labels: Mapping[str, str] | None = None  # replaces the labels (a session learns its study)
    # Replaces the admission document (`shared.admitting`): whether the run may start, or why it waits.
    admission: Mapping[str, Any] | None = None

    def apply(self, record: Mapping[str, Any]) -> dict[str, Any]:
        """The record after this update (InvalidTransitionError for a move the table forbids).
        Re-writing the same state is allowed: activities run at least once."""
        changed = dict(record)
        if self.state is not None and self.state.value != record["state"]:
            require_transition(JobState(record["state"]), self.state)
        for f in fields(self):
            value = getattr(self, f.name)
            if value is not None:
                changed[f.name] = value.value if isinstance(value, JobState) else value
        changed["updated"] = utc_now()
        return changed

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> JobUpdate:
        state = data.get("state")
        return cls(
            state=JobState(state) if state is not None else None,
            attempts=data.get("attempts"),
            last_error=data.get("last_error"),
            started=data.get("started"),
            finished=data.get("finished"),
            outcome=data.get("outcome"),
            labels=data.get("labels"),
            admission=data.get("admission"),
        )


def new_record(
    job_id: str,
    kind: JobKind,
    request: Mapping[str, Any],
    requested_by: str,
    labels: Mapping[str, str],
    **extra: Any,
) -> dict[str, Any]:
    """A queued job's first record, the same shape for every kind (`extra`: the kind's own fields).
    `submitted` is `created` to the microsecond: the order in which jobs wait their turn."""
    moment = dt.datetime.now(dt.UTC)
    now = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"id": job_id, "kind": kind.value, "state": JobState.QUEUED.value, "requested_by": requested_by,
            "labels": dict(labels), "request": dict(request), **extra, "created": now, "updated": now,
            "submitted": _fine(moment), "attempts": 0, "last_error": None}  # fmt: skip


@dataclass(frozen=True)
class PartUpdate:
    """A change to one part's progress written by its orchestration (state, failures, error)."""

    state: str | None = None
    consecutive_failures: int | None = None
    last_error: str | None = None
    pages: int | None = None

    def apply(self, progress: Mapping[str, Any]) -> dict[str, Any]:
        changed = dict(progress)
        changed.update({k: v for k, v in self.to_dict().items()})
        changed["updated"] = utc_now()
        return changed

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) is not None}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PartUpdate:
        return cls(**{f.name: data.get(f.name) for f in fields(cls)})


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    kind: str
    state: str
    requested_by: str
    labels: dict[str, str]
    created: str


_EPOCH_LIMIT: Final = 10**11  # seconds: year 5138; keeps every inverted stamp 11 digits


def index_key(job: JobSummary) -> str:
    """The listing order, newest first: an inverted creation time, then the id. Also the
    continuation token: the key of the last job a page returned."""
    try:
        created = dt.datetime.fromisoformat(job.created.replace("Z", "+00:00"))
        seconds = int(created.replace(tzinfo=created.tzinfo or dt.UTC).timestamp())
    except ValueError:
        seconds = 0  # an unreadable stamp sorts last
    return f"{_EPOCH_LIMIT - 1 - seconds:011d}-{job.job_id}"


def summary_of(record: Mapping[str, Any]) -> JobSummary:
    return JobSummary(
        job_id=str(record["id"]),
        kind=str(record.get("kind") or DEFAULT_KIND.value),
        state=str(record["state"]),
        requested_by=str(record.get("requested_by", "")),
        labels=dict(record.get("labels") or {}),
        created=str(record.get("created", "")),
    )


_UNFINISHED: Final = frozenset({JobState.QUEUED.value, JobState.RUNNING.value, JobState.RETRYING.value})


@dataclass(frozen=True)
class OpenJob:
    """An unfinished job as the caps on running jobs see it (`shared.admission`): whose, which
    kind, its place in line (`submitted`, then the id) and whether it has started. A job has
    started when it runs or retries, or when its current run was admitted (it may still be
    preparing): the record's `admission` is `{"run": n, "admitted": instant}` for that run."""

    job_id: str
    kind: str
    requested_by: str
    state: str
    submitted: str
    admitted: bool = False

    @property
    def started(self) -> bool:
        return self.admitted or self.state != JobState.QUEUED.value

    @property
    def order(self) -> tuple[str, str]:
        return (self.submitted, self.job_id)


def current_admission(record: Mapping[str, Any], run: int | None = None) -> dict[str, Any]:
    """The record's admission document (`shared.admitting`) if it is about `run` (default: the
    record's own run), else {}: an earlier run's admission says nothing about this one."""
    found = record.get("admission")
    wanted = record.get("run", 0) if run is None else run
    return dict(found) if isinstance(found, Mapping) and found.get("run", 0) == wanted else {}


def open_job_of(record: Mapping[str, Any]) -> OpenJob | None:
    """The record as an `OpenJob`, or None once it has ended. Records older than `submitted`
    take their `created` second."""
    state = str(record.get("state"))
    if state not in _UNFINISHED:
        return None
    created = str(record.get("created") or "")
    return OpenJob(
        job_id=str(record["id"]),
        kind=str(record.get("kind") or DEFAULT_KIND.value),
        requested_by=str(record.get("requested_by", "")),
        state=state,
        submitted=str(record.get("submitted") or created.replace("Z", ".000000Z")),
        admitted=current_admission(record).get("admitted") is not None,
    )


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    continuation: str | None


@dataclass(frozen=True)
class ListQuery:
    """Filters of a listing; the jobs come newest first. `created_*` are ISO instants (UTC)."""

    kind: str | None = None
    state: str | None = None
    requested_by: str | None = None
    label: tuple[str, str] | None = None
    created_from: str | None = None
    created_to: str | None = None
    limit: int = 50
    continuation: str | None = None

    def matches(self, job: JobSummary) -> bool:
        return (
            (self.kind is None or job.kind == self.kind)
            and (self.state is None or job.state == self.state)
            and (self.requested_by is None or job.requested_by.lower() == self.requested_by.lower())
            and (self.label is None or job.labels.get(self.label[0]) == self.label[1])
            and (self.created_from is None or job.created >= self.created_from)
            and (self.created_to is None or job.created <= self.created_to)
        )


@dataclass
class JobView:
    """A record with its parts' progress, as the status API shows it."""

    record: dict[str, Any]
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancel_requested: bool = False


@runtime_checkable
class JobStore(Protocol):
    def put_record(self, record: Mapping[str, Any]) -> None:
        """Create or replace a record (the listing index follows)."""
        ...

    def create_record(self, record: Mapping[str, Any]) -> bool:
        """Create a record unless one with its id exists; False (and no write) when it does.
        Lets two triggers race to open the same job: one creates it, the other sees it."""
        ...

    def update_record(self, job_id: str, update: JobUpdate) -> dict[str, Any]:
        """Apply `update` (KeyError for an unknown job) and return the new record."""
        ...

    def get_record(self, job_id: str) -> dict[str, Any] | None: ...

    def put_part(self, job_id: str, part: str, progress: Mapping[str, Any]) -> None:
        """Replace one part's progress document."""
        ...

    def get_part(self, job_id: str, part: str) -> dict[str, Any] | None: ...

    def request_cancel(self, job_id: str) -> None: ...

    def cancel_requested(self, job_id: str) -> bool: ...

    def put_marker(self, job_id: str, name: str, document: Mapping[str, Any]) -> None:
        """A document beside the record written by someone other than the job's orchestration
        (a session's completion message), so the two never overwrite each other's writes."""
        ...

    def get_marker(self, job_id: str, name: str) -> dict[str, Any] | None: ...

    def view(self, job_id: str) -> JobView | None: ...

    def list(self, query: ListQuery) -> JobPage:
        """Jobs matching `query`, newest first; pass `continuation` back for the next page."""
        ...

    def open_jobs(self) -> tuple[OpenJob, ...]:
        """Every unfinished job, in no particular order (the caps on running jobs read them)."""
        ...

    def reindex(self, job_id: str) -> None:
        """Write the job's listing rows again from its record (a crash may have left them behind)."""
        ...
