"""`MemoryJobStore`: the job store in a process's memory, for fast tests of activities and APIs.

Behaves like the Azure store (the state table enforced, newest-first listing with the same
continuation contract); not for production: nothing survives the process.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Mapping
from typing import Any

from shared.jobstore.base import (
    JobPage,
    JobUpdate,
    JobView,
    ListQuery,
    OpenJob,
    index_key,
    open_job_of,
    summary_of,
)

__all__ = ["MemoryJobStore"]


class MemoryJobStore:
    def __init__(self) -> None:
        self._records: dict[str, dict[str, Any]] = {}
        self._parts: dict[str, dict[str, dict[str, Any]]] = {}
        self._cancelled: set[str] = set()
        self._markers: dict[tuple[str, str], dict[str, Any]] = {}
        self._lock = threading.Lock()

    def put_record(self, record: Mapping[str, Any]) -> None:
        with self._lock:
            self._records[str(record["id"])] = copy.deepcopy(dict(record))

    def create_record(self, record: Mapping[str, Any]) -> bool:
        with self._lock:
            if str(record["id"]) in self._records:
                return False
            self._records[str(record["id"])] = copy.deepcopy(dict(record))
            return True

    def update_record(self, job_id: str, update: JobUpdate) -> dict[str, Any]:
        with self._lock:
            if job_id not in self._records:
                raise KeyError(job_id)
            self._records[job_id] = update.apply(self._records[job_id])
            return copy.deepcopy(self._records[job_id])

    def get_record(self, job_id: str) -> dict[str, Any] | None:
        with self._lock:
            record = self._records.get(job_id)
            return copy.deepcopy(record) if record is not None else None

    def put_part(self, job_id: str, part: str, progress: Mapping[str, Any]) -> None:
        with self._lock:
            self._parts.setdefault(job_id, {})[part] = copy.deepcopy(dict(progress))

    def get_part(self, job_id: str, part: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._parts.get(job_id, {}).get(part)
            return copy.deepcopy(found) if found is not None else None

    def request_cancel(self, job_id: str) -> None:
        with self._lock:
            self._cancelled.add(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        with self._lock:
            return job_id in self._cancelled

    def put_marker(self, job_id: str, name: str, document: Mapping[str, Any]) -> None:
        with self._lock:
            self._markers[(job_id, name)] = copy.deepcopy(dict(document))

    def get_marker(self, job_id: str, name: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._markers.get((job_id, name))
            return copy.deepcopy(found) if found is not None else None

    def view(self, job_id: str) -> JobView | None:
        with self._lock:
            record = self._records.get(job_id)
            if record is None:
                return None
            parts = copy.deepcopy(self._parts.get(job_id, {}))
            return JobView(copy.deepcopy(record), parts, job_id in self._cancelled)

    def list(self, query: ListQuery) -> JobPage:
        with self._lock:
            jobs = sorted((summary_of(r) for r in self._records.values()), key=index_key)
        after = query.continuation
        found = [j for j in jobs if (after is None or index_key(j) > after) and query.matches(j)]
        page = found[: query.limit]
        return JobPage(page, index_key(page[-1]) if len(found) > query.limit else None)

    def open_jobs(self) -> tuple[OpenJob, ...]:
        with self._lock:
            found = [open_job_of(r) for r in self._records.values()]
        return tuple(j for j in found if j is not None)

    def reindex(self, job_id: str) -> None:
        """Nothing to do: the listing is computed from the records."""
