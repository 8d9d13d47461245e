"""Export job records (the seed's ExportJobRecord) in a blob container of the app's storage.

Layout of container `export-jobs`:
    jobs/{id}.json             the job record: request (secret names only), state, attempts,
                               last error, outcome; metadata mirrors state/requested_by/labels
                               so listing can filter without reading every record
    jobs/{id}/types/{T}.json   progress of one resource type, written at each of its commits
    jobs/{id}/cancel           present once a cancel was requested

One writer per blob: the job orchestration writes the record, each type's commits write its
progress blob, the API writes the cancel marker. Records never contain secret values.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient, ContentSettings

from shared.destinations.blob import container_client, storage_errors
from shared.jobs import JobState, require_transition

CONTAINER = "export-jobs"
_JSON = ContentSettings(content_type="application/json")


def _b64(text: str) -> str:
    # Metadata values must be ASCII; requested_by and labels are user text.
    return base64.urlsafe_b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.urlsafe_b64decode(text.encode()).decode()


@dataclass(frozen=True)
class JobSummary:
    job_id: str
    state: str
    requested_by: str
    labels: dict[str, str]
    created: str


@dataclass(frozen=True)
class JobPage:
    jobs: list[JobSummary]
    continuation: str | None


@dataclass
class JobView:
    """A record with its per-type progress, as the status API shows it."""

    record: dict[str, Any]
    types: dict[str, dict[str, Any]] = field(default_factory=dict)
    cancel_requested: bool = False


class JobStore:
    def __init__(self, container: ContainerClient) -> None:
        self._c = container
        self._ready = False

    @classmethod
    def connect(cls, connection: str) -> JobStore:
        return cls(container_client(connection, CONTAINER))

    def _ensure(self) -> None:
        if self._ready:
            return
        with storage_errors("create container", CONTAINER):
            if not self._c.exists():
                try:
                    self._c.create_container()
                except ResourceExistsError:
                    # Created concurrently by another writer (fine), or still being deleted
                    # (409 ContainerBeingDeleted: re-raised, transient through storage_errors).
                    if not self._c.exists():
                        raise
        self._ready = True

    # -- writes ------------------------------------------------------------------------------

    def put_record(self, record: Mapping[str, Any]) -> None:
        self._ensure()
        job_id = str(record["id"])
        labels = record.get("labels") or {}
        metadata = {
            "state": str(record["state"]),
            "requested_by": _b64(str(record.get("requested_by", ""))),
            "labels": _b64(json.dumps(labels, sort_keys=True)),
            "created": str(record.get("created", "")),
        }
        with storage_errors("write job record", job_id):
            self._c.upload_blob(
                f"jobs/{job_id}.json",
                json.dumps(record, sort_keys=True).encode(),
                overwrite=True,
                metadata=metadata,
                content_settings=_JSON,
            )

    def update_record(self, job_id: str, **changes: Any) -> dict[str, Any]:
        record = self.get_record(job_id)
        if record is None:
            raise KeyError(job_id)
        if "state" in changes and changes["state"] != record["state"]:
            # Re-writing the same state is allowed: activities run at least once.
            require_transition(JobState(record["state"]), JobState(changes["state"]))
        record.update(changes)
        record["updated"] = utc_now()
        self.put_record(record)
        return record

    def put_type_progress(self, job_id: str, resource_type: str, progress: Mapping[str, Any]) -> None:
        self._ensure()
        with storage_errors("write progress", f"{job_id}/{resource_type}"):
            self._c.upload_blob(
                f"jobs/{job_id}/types/{resource_type}.json",
                json.dumps(progress, sort_keys=True).encode(),
                overwrite=True,
                content_settings=_JSON,
            )

    def request_cancel(self, job_id: str) -> None:
        self._ensure()
        with storage_errors("request cancel", job_id):
            self._c.upload_blob(f"jobs/{job_id}/cancel", b"", overwrite=True)

    # -- reads -------------------------------------------------------------------------------

    def _read_json(self, name: str) -> dict[str, Any] | None:
        with storage_errors("read", name):
            try:
                data = self._c.download_blob(name).readall()
            except ResourceNotFoundError:
                return None
        return dict(json.loads(data))

    def get_record(self, job_id: str) -> dict[str, Any] | None:
        self._ensure()
        return self._read_json(f"jobs/{job_id}.json")

    def get_type_progress(self, job_id: str, resource_type: str) -> dict[str, Any] | None:
        self._ensure()
        return self._read_json(f"jobs/{job_id}/types/{resource_type}.json")

    def cancel_requested(self, job_id: str) -> bool:
        self._ensure()
        with storage_errors("read cancel marker", job_id):
            return bool(self._c.get_blob_client(f"jobs/{job_id}/cancel").exists())

    def view(self, job_id: str) -> JobView | None:
        record = self.get_record(job_id)
        if record is None:
            return None
        view = JobView(record)
        prefix = f"jobs/{job_id}/"
        with storage_errors("list progress", job_id):
            names = [b.name for b in self._c.list_blobs(name_starts_with=prefix)]
        for name in names:
            if name == prefix + "cancel":
                view.cancel_requested = True
            elif name.startswith(prefix + "types/") and name.endswith(".json"):
                progress = self._read_json(name)
                if progress is not None:
                    view.types[name[len(prefix + "types/") : -5]] = progress
        return view

    def list(
        self,
        *,
        state: str | None = None,
        requested_by: str | None = None,
        label: tuple[str, str] | None = None,
        limit: int = 50,
        continuation: str | None = None,
    ) -> JobPage:
        """Jobs in id order, filtered on the records' metadata; `continuation` is the last id returned."""
        self._ensure()
        found: list[JobSummary] = []
        with storage_errors("list jobs", CONTAINER):
            for item in self._walk(continuation):
                summary = _summary(item)
                if state and summary.state != state:
                    continue
                if requested_by and summary.requested_by.lower() != requested_by.lower():
                    continue
                if label and summary.labels.get(label[0]) != label[1]:
                    continue
                found.append(summary)
                if len(found) > limit:
                    break
        if len(found) > limit:
            return JobPage(found[:limit], found[limit - 1].job_id)
        return JobPage(found, None)

    def _walk(self, after: str | None) -> Iterator[Any]:
        for item in self._c.walk_blobs(name_starts_with="jobs/", delimiter="/", include=["metadata"]):
            name = getattr(item, "name", "")
            if not name.endswith(".json") or name.count("/") != 1:
                continue  # a BlobPrefix (jobs/{id}/) or something else
            job_id = name[len("jobs/") : -len(".json")]
            if after is not None and job_id <= after:
                continue
            yield item


def _summary(item: Any) -> JobSummary:
    meta = item.metadata or {}
    try:
        labels = json.loads(_unb64(meta.get("labels", _b64("{}"))))
        requested_by = _unb64(meta.get("requested_by", ""))
    except (ValueError, UnicodeDecodeError):
        labels, requested_by = {}, ""
    return JobSummary(
        job_id=item.name[len("jobs/") : -len(".json")],
        state=meta.get("state", ""),
        requested_by=requested_by,
        labels=labels,
        created=meta.get("created", ""),
    )


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
