"""An export's working data, kept in the service's own blob storage and never in orchestration
history (which must stay small): the patient list of a restricted export, and the ids that
de-duplicate ORed searches. Container `export-work`:

    jobs/{job}/patients.txt                             patient ids, one a line (the kick-off)
    jobs/{job}/seen/{Type}/{query:06d}-{page:012d}.ids  ids one page kept, one a line; written
                                                        only where later searches need them

Names are deterministic, so a page that runs again (retry, crash, resume from the last commit)
overwrites its own ids instead of adding to them. `delete_job` removes everything once the job
has ended. `MemoryWorkStore` is the in-memory twin the unit tests use.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterable, Sequence
from typing import Final, Protocol

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import ContainerClient

from shared.destinations.blob import container_client, storage_errors

__all__ = ["CONTAINER", "BlobWorkStore", "MemoryWorkStore", "WorkStore", "work_store"]

CONTAINER: Final = "export-work"


class WorkStore(Protocol):
    def put_patients(self, job_id: str, ids: Sequence[str]) -> None: ...

    def patients(self, job_id: str) -> tuple[str, ...] | None:
        """The stored patient list, or None when there is none."""
        ...

    def put_kept_ids(
        self, job_id: str, resource_type: str, query: int, page: int, ids: Sequence[str]
    ) -> None:
        """The ids page `page` of search `query` kept (replacing what an earlier run stored)."""
        ...

    def kept_ids(self, job_id: str, resource_type: str, queries: range) -> frozenset[str]:
        """Every id the pages of `queries` kept."""
        ...

    def delete_job(self, job_id: str) -> None: ...


def _encode(ids: Iterable[str]) -> bytes:
    return "".join(f"{i}\n" for i in ids).encode()


def _decode(data: bytes) -> tuple[str, ...]:
    return tuple(line for line in data.decode().splitlines() if line)


def _seen_prefix(job_id: str, resource_type: str) -> str:
    return f"jobs/{job_id}/seen/{resource_type}/"


def _query_of(name: str) -> int | None:
    """`000003-000000000012.ids` -> 3 (None for a name of another shape)."""
    head, sep, _ = name.rpartition("/")[2].partition("-")
    return int(head) if sep and head.isdigit() else None


class BlobWorkStore:
    """The `WorkStore` over one blob container of the service's storage."""

    def __init__(self, container: ContainerClient) -> None:
        self._c = container
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        # Exists already: the normal case after the first restricted or de-duplicated export.
        with storage_errors("create container", CONTAINER), contextlib.suppress(ResourceExistsError):
            self._c.create_container()
        self._ready = True

    def _put(self, name: str, data: bytes) -> None:
        self._ensure()
        with storage_errors("write", name):
            self._c.upload_blob(name, data, overwrite=True)

    def _get(self, name: str) -> bytes | None:
        self._ensure()
        with storage_errors("read", name):
            try:
                return bytes(self._c.download_blob(name).readall())
            except ResourceNotFoundError:
                return None

    def put_patients(self, job_id: str, ids: Sequence[str]) -> None:
        self._put(f"jobs/{job_id}/patients.txt", _encode(ids))

    def patients(self, job_id: str) -> tuple[str, ...] | None:
        data = self._get(f"jobs/{job_id}/patients.txt")
        return None if data is None else _decode(data)

    def put_kept_ids(
        self, job_id: str, resource_type: str, query: int, page: int, ids: Sequence[str]
    ) -> None:
        self._put(f"{_seen_prefix(job_id, resource_type)}{query:06d}-{page:012d}.ids", _encode(ids))

    def kept_ids(self, job_id: str, resource_type: str, queries: range) -> frozenset[str]:
        if not queries:
            return frozenset()
        self._ensure()
        prefix = _seen_prefix(job_id, resource_type)
        with storage_errors("list", prefix):
            names = [b.name for b in self._c.list_blobs(name_starts_with=prefix)]
        found: set[str] = set()
        for name in names:
            if _query_of(name) in queries:
                found.update(_decode(self._get(name) or b""))
        return frozenset(found)

    def delete_job(self, job_id: str) -> None:
        self._ensure()
        prefix = f"jobs/{job_id}/"
        with storage_errors("list", prefix):
            names = [b.name for b in self._c.list_blobs(name_starts_with=prefix)]
        for name in names:
            # Gone already: deleted by an earlier run of the same clean-up (at least once).
            with storage_errors("delete", name), contextlib.suppress(ResourceNotFoundError):
                self._c.delete_blob(name)


@functools.cache
def work_store(connection: str) -> BlobWorkStore:
    """The process's work store on the service's storage (`Settings.web_jobs_storage`)."""
    return BlobWorkStore(container_client(connection, CONTAINER))


class MemoryWorkStore:
    """The in-memory twin: same behaviour, a dict instead of blobs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._patients: dict[str, tuple[str, ...]] = {}
        self._seen: dict[tuple[str, str, int, int], tuple[str, ...]] = {}
        self.reads = 0  # kept_ids calls, so tests can see caching work

    def put_patients(self, job_id: str, ids: Sequence[str]) -> None:
        with self._lock:
            self._patients[job_id] = tuple(ids)

    def patients(self, job_id: str) -> tuple[str, ...] | None:
        with self._lock:
            return self._patients.get(job_id)

    def put_kept_ids(
        self, job_id: str, resource_type: str, query: int, page: int, ids: Sequence[str]
    ) -> None:
        with self._lock:
            self._seen[(job_id, resource_type, query, page)] = tuple(ids)

    def kept_ids(self, job_id: str, resource_type: str, queries: range) -> frozenset[str]:
        with self._lock:
            self.reads += 1
            return frozenset(
                i
                for (job, t, query, _), ids in self._seen.items()
                if job == job_id and t == resource_type and query in queries
                for i in ids
            )

    def delete_job(self, job_id: str) -> None:
        with self._lock:
            self._patients.pop(job_id, None)
            for key in [k for k in self._seen if k[0] == job_id]:
                del self._seen[key]
