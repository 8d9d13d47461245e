"""`AzureJobStore`: job records in blobs, parts and the listing index in tables (Azurite locally).

    blob  export-jobs/jobs/{id}.json     the record (its request may be large: a batch's items)
    blob  export-jobs/jobs/{id}/cancel   present once a cancel was requested
    blob  export-jobs/jobs/{id}/{name}.marker.json   a marker document (`put_marker`)
    table jobparts   PK = job id, RK = part name          one part's progress (JSON)
    table jobindex   PK = "all" | "user:{requester}"      one row per job and partition, RK =
                        | "label:{key}={value}"            inverted creation time + id
                     RK = `index_key`: newest first; the row mirrors kind, state, requester,
                     labels. Label partitions exist for INDEXED_LABELS only (study, session).
                     PK = "open", RK = job id: one row per unfinished job (kind, state,
                     requester, `submitted`, admitted), gone when it ends: the caps on running
                     jobs read this small partition whole, never the history (`open_jobs`).

A filtered listing reads only index rows: an indexed label's partition when one is asked for,
else the requester's (else "all"), a RowKey range for the creation range and the continuation,
and a server-side filter on kind and state; other labels are matched on the rows read. The record is the truth: it is written first,
then its index rows, so a crash between the two leaves a row one state behind until the job's
next write. One writer per blob and per part row (the job's orchestration, one activity per part).
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Iterator, Mapping
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import TableClient, TableServiceClient, UpdateMode
from azure.storage.blob import ContainerClient, ContentSettings

from shared.destinations.blob import container_client, storage_errors
from shared.errors import PermanentError, TransientError
from shared.jobstore.base import (
    INDEXED_LABELS,
    JobPage,
    JobSummary,
    JobUpdate,
    JobView,
    ListQuery,
    OpenJob,
    index_key,
    open_job_of,
    summary_of,
)

__all__ = ["CONTAINER", "INDEX_TABLE", "OPEN_PARTITION", "PARTS_TABLE", "AzureJobStore"]

CONTAINER: Final = "export-jobs"
INDEX_TABLE: Final = "jobindex"
PARTS_TABLE: Final = "jobparts"
_JSON = ContentSettings(content_type="application/json")
# A table property holds at most 64 KiB (32 K UTF-16 characters); an entity at most 1 MiB. A
# part's progress is split over up to 24 properties of 30,000 characters.
_CHUNK: Final = 30_000
_MAX_CHUNKS: Final = 24
_SCAN_PAGE: Final = 200
_UPDATE_ATTEMPTS: Final = 8  # writers of one record at once: its orchestration, a reconcile, an admission
OPEN_PARTITION: Final = "open"


def _key_safe(text: str) -> str:
    # PartitionKey/RowKey may not contain / \ # ? or control characters; names are user text.
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _user_partition(requested_by: str) -> str:
    return "user:" + _key_safe(requested_by.lower())


def _label_partition(key: str, value: str) -> str:
    return "label:" + _key_safe(f"{key}={value}")


def _table_service(connection: str) -> TableServiceClient:
    if not connection.lower().startswith(("http://", "https://")):
        try:
            return TableServiceClient.from_connection_string(connection)
        except ValueError:
            raise PermanentError("the storage connection string is not valid") from None
    from azure.identity import DefaultAzureCredential  # identity-based host storage (Azure)

    return TableServiceClient(connection.replace(".blob.", ".table."), credential=DefaultAzureCredential())


class AzureJobStore:
    def __init__(self, container: ContainerClient, tables: TableServiceClient) -> None:
        self._c = container
        self._index: TableClient = tables.get_table_client(INDEX_TABLE)
        self._parts: TableClient = tables.get_table_client(PARTS_TABLE)
        self._tables = tables
        self._ready = False

    @classmethod
    def connect(cls, connection: str) -> AzureJobStore:
        return cls(container_client(connection, CONTAINER), _table_service(connection))

    def _ensure(self) -> None:
        if self._ready:
            return
        with storage_errors("create container", CONTAINER), contextlib.suppress(ResourceExistsError):
            self._c.create_container()
        for table in (INDEX_TABLE, PARTS_TABLE):
            with storage_errors("create table", table):
                self._tables.create_table_if_not_exists(table)
        self._ready = True

    # -- records -----------------------------------------------------------------------------

    def put_record(self, record: Mapping[str, Any]) -> None:
        self._ensure()
        job_id = str(record["id"])
        with storage_errors("write job record", job_id):
            self._c.upload_blob(
                f"jobs/{job_id}.json",
                json.dumps(record, sort_keys=True).encode(),
                overwrite=True,
                content_settings=_JSON,
            )
        self._index_job(summary_of(record))
        self._index_open(record)

    def create_record(self, record: Mapping[str, Any]) -> bool:
        self._ensure()
        job_id = str(record["id"])
        with storage_errors("create job record", job_id):
            try:
                self._c.upload_blob(
                    f"jobs/{job_id}.json",
                    json.dumps(record, sort_keys=True).encode(),
                    overwrite=False,
                    content_settings=_JSON,
                )
            except ResourceExistsError:
                return False
        self._index_job(summary_of(record))
        self._index_open(record)
        return True

    def update_record(self, job_id: str, update: JobUpdate) -> dict[str, Any]:
        """Read, apply, write back only if nobody wrote in between (the blob's ETag), else again:
        a job's orchestration, the reconciler and an admission check may update it at once, and
        a lost write could bring a settled job back to `queued`. The memory twin holds a lock."""
        self._ensure()
        name = f"jobs/{job_id}.json"
        for _ in range(_UPDATE_ATTEMPTS):
            with storage_errors("read job record", job_id):
                try:
                    downloaded = self._c.download_blob(name)
                except ResourceNotFoundError:
                    raise KeyError(job_id) from None
                record = dict(json.loads(downloaded.readall()))
            changed = update.apply(record)
            with storage_errors("write job record", job_id):
                try:
                    self._c.upload_blob(name, json.dumps(changed, sort_keys=True).encode(), overwrite=True,
                                        content_settings=_JSON, etag=downloaded.properties.etag,
                                        match_condition=MatchConditions.IfNotModified)  # fmt: skip
                except ResourceModifiedError:
                    continue  # another writer came first: apply the update to what it wrote
            self._index_job(summary_of(changed))
            self._index_open(changed)
            return changed
        raise TransientError(f"job record {job_id} kept changing under {_UPDATE_ATTEMPTS} updates; try again")

    def get_record(self, job_id: str) -> dict[str, Any] | None:
        self._ensure()
        with storage_errors("read job record", job_id):
            try:
                data = self._c.download_blob(f"jobs/{job_id}.json").readall()
            except ResourceNotFoundError:
                return None
        return dict(json.loads(data))

    def _index_job(self, job: JobSummary) -> None:
        row = {
            "RowKey": index_key(job),
            "job_id": job.job_id,
            "kind": job.kind,
            "state": job.state,
            "requested_by": job.requested_by,
            "labels": json.dumps(job.labels, sort_keys=True),
            "created": job.created,
        }
        with storage_errors("index job", job.job_id):
            labelled = [_label_partition(k, v) for k, v in sorted(job.labels.items()) if k in INDEXED_LABELS]
            for partition in ("all", _user_partition(job.requested_by), *labelled):
                self._index.upsert_entity({**row, "PartitionKey": partition}, mode=UpdateMode.REPLACE)

    def _index_open(self, record: Mapping[str, Any]) -> None:
        job_id = str(record["id"])
        job = open_job_of(record)
        with storage_errors("index open job", job_id):
            if job is None:
                self._index.delete_entity(OPEN_PARTITION, job_id)  # an absent row is fine
                return
            row = {"PartitionKey": OPEN_PARTITION, "RowKey": job_id, "kind": job.kind, "state": job.state,
                   "requested_by": job.requested_by, "submitted": job.submitted,
                   "admitted": job.admitted}  # fmt: skip
            self._index.upsert_entity(row, mode=UpdateMode.REPLACE)

    def open_jobs(self) -> tuple[OpenJob, ...]:
        self._ensure()
        with storage_errors("list open jobs", INDEX_TABLE):
            rows = self._index.query_entities(
                "PartitionKey eq @pk", parameters={"pk": OPEN_PARTITION}, results_per_page=1000
            )
            return tuple(
                OpenJob(
                    job_id=str(row["RowKey"]),
                    kind=str(row["kind"]),
                    state=str(row["state"]),
                    requested_by=str(row["requested_by"]),
                    submitted=str(row["submitted"]),
                    admitted=bool(row.get("admitted")),
                )
                for row in rows
            )

    def reindex(self, job_id: str) -> None:
        record = self.get_record(job_id)
        if record is None:
            with storage_errors("index open job", job_id):
                self._index.delete_entity(OPEN_PARTITION, job_id)
            return
        self._index_job(summary_of(record))
        self._index_open(record)

    # -- parts -------------------------------------------------------------------------------

    def put_part(self, job_id: str, part: str, progress: Mapping[str, Any]) -> None:
        self._ensure()
        text = json.dumps(progress, sort_keys=True)
        chunks = [text[i : i + _CHUNK] for i in range(0, len(text), _CHUNK)] or [""]
        if len(chunks) > _MAX_CHUNKS:
            raise PermanentError(f"job {job_id} part {part}: progress too large to record")
        entity: dict[str, Any] = {"PartitionKey": job_id, "RowKey": _key_safe(part), "part": part}
        entity.update({f"d{i:02d}": chunk for i, chunk in enumerate(chunks)})
        with storage_errors("write part progress", f"{job_id}/{part}"):
            self._parts.upsert_entity(entity, mode=UpdateMode.REPLACE)

    def get_part(self, job_id: str, part: str) -> dict[str, Any] | None:
        self._ensure()
        with storage_errors("read part progress", f"{job_id}/{part}"):
            try:
                entity = self._parts.get_entity(job_id, _key_safe(part))
            except ResourceNotFoundError:
                return None
        return _progress(entity)

    def _all_parts(self, job_id: str) -> dict[str, dict[str, Any]]:
        with storage_errors("read parts", job_id):
            entities = list(self._parts.query_entities("PartitionKey eq @job", parameters={"job": job_id}))
        return {str(e["part"]): _progress(e) for e in entities}

    # -- cancel ------------------------------------------------------------------------------

    def request_cancel(self, job_id: str) -> None:
        self._ensure()
        with storage_errors("request cancel", job_id):
            self._c.upload_blob(f"jobs/{job_id}/cancel", b"", overwrite=True)

    def cancel_requested(self, job_id: str) -> bool:
        self._ensure()
        with storage_errors("read cancel marker", job_id):
            return bool(self._c.get_blob_client(f"jobs/{job_id}/cancel").exists())

    def put_marker(self, job_id: str, name: str, document: Mapping[str, Any]) -> None:
        self._ensure()
        with storage_errors("write job marker", f"{job_id}/{name}"):
            self._c.upload_blob(f"jobs/{job_id}/{name}.marker.json", json.dumps(document).encode(),
                                overwrite=True, content_settings=_JSON)  # fmt: skip

    def get_marker(self, job_id: str, name: str) -> dict[str, Any] | None:
        self._ensure()
        with storage_errors("read job marker", f"{job_id}/{name}"):
            try:
                data = self._c.download_blob(f"jobs/{job_id}/{name}.marker.json").readall()
            except ResourceNotFoundError:
                return None
        return dict(json.loads(data))

    # -- reads -------------------------------------------------------------------------------

    def view(self, job_id: str) -> JobView | None:
        record = self.get_record(job_id)
        if record is None:
            return None
        return JobView(record, self._all_parts(job_id), self.cancel_requested(job_id))

    def list(self, query: ListQuery) -> JobPage:
        self._ensure()
        found: list[JobSummary] = []
        for job in self._scan(query):
            if query.matches(job):
                found.append(job)
                if len(found) > query.limit:
                    break
        page = found[: query.limit]
        return JobPage(page, index_key(page[-1]) if len(found) > query.limit else None)

    def _scan(self, query: ListQuery) -> Iterator[JobSummary]:
        if query.label and query.label[0] in INDEXED_LABELS:
            partition = _label_partition(*query.label)
        elif query.requested_by:
            partition = _user_partition(query.requested_by)
        else:
            partition = "all"
        clauses, params = ["PartitionKey eq @pk"], {"pk": partition}
        low = query.continuation
        if query.created_to:  # newest first: a later bound is a smaller key
            low = max(low or "", _bound(query.created_to, "0" * 32))
        if low:
            clauses.append("RowKey gt @low")
            params["low"] = low
        if query.created_from:
            clauses.append("RowKey lt @high")
            params["high"] = _bound(query.created_from, "~")
        for name in ("kind", "state"):
            value = getattr(query, name)
            if value:
                clauses.append(f"{name} eq @{name}")
                params[name] = value
        with storage_errors("list jobs", INDEX_TABLE):
            rows = self._index.query_entities(
                " and ".join(clauses), parameters=params, results_per_page=_SCAN_PAGE
            )
            for row in rows:
                yield JobSummary(
                    job_id=str(row["job_id"]),
                    kind=str(row["kind"]),
                    state=str(row["state"]),
                    requested_by=str(row["requested_by"]),
                    labels=dict(json.loads(row.get("labels") or "{}")),
                    created=str(row["created"]),
                )


def _bound(instant: str, job_id: str) -> str:
    """The index key of an instant, before (job_id "0…") or after ("~") every job of that second."""
    return index_key(JobSummary(job_id, "", "", "", {}, instant))


def _progress(entity: Mapping[str, Any]) -> dict[str, Any]:
    text = "".join(str(entity[k]) for k in sorted(k for k in entity if k.startswith("d") and k[1:].isdigit()))
    return dict(json.loads(text or "{}"))
