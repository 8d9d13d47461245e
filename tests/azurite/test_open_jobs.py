"""The job store's open jobs (what the caps on running jobs read), on Azurite and in memory: a
job is listed from its first record until it ends, with its place in line and whether its run
was admitted; `reindex` drops a row its record left behind."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from azure.data.tables import TableClient

from shared.jobs import JobState
from shared.jobstore import AzureJobStore, JobKind, JobStore, JobUpdate, MemoryJobStore, OpenJob, new_record
from shared.jobstore.azure import INDEX_TABLE, OPEN_PARTITION
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(params=["azure", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    yield AzureJobStore.connect(azurite.connection_string)


def mine(store: JobStore, *ids: str) -> dict[str, OpenJob]:
    """The open jobs among `ids` (Azurite is shared with other tests)."""
    return {j.job_id: j for j in store.open_jobs() if j.job_id in ids}


def test_a_job_is_open_from_its_first_record_until_it_ends(store: JobStore) -> None:
    job_id = uuid.uuid4().hex
    record = new_record(job_id, JobKind.BATCH, {}, "Open@Example.com", {})
    assert store.create_record(record)
    [listed] = mine(store, job_id).values()
    assert listed == OpenJob(job_id, "batch", "Open@Example.com", "queued", record["submitted"])
    assert not listed.started and listed.order == (record["submitted"], job_id)
    store.update_record(job_id, JobUpdate(admission={"run": 0, "admitted": "2026-12-01T10:00:00Z"}))
    assert mine(store, job_id)[job_id].admitted and mine(store, job_id)[job_id].started
    store.update_record(job_id, JobUpdate(JobState.RUNNING))
    assert mine(store, job_id)[job_id].state == "running"
    store.update_record(job_id, JobUpdate(JobState.FAILED))
    assert mine(store, job_id) == {}
    requeued = store.get_record(job_id)
    assert requeued is not None
    store.put_record({**requeued, "state": "queued", "run": 1})  # the last run's admission is not this one's
    assert mine(store, job_id)[job_id] == OpenJob(
        job_id, "batch", "Open@Example.com", "queued", record["submitted"]
    )


def test_records_older_than_submitted_take_their_created_second(store: JobStore) -> None:
    job_id = uuid.uuid4().hex
    store.put_record({"id": job_id, "state": "queued", "requested_by": "old@example.com", "labels": {},
                      "created": "2026-12-01T10:00:00Z"})  # fmt: skip
    listed = mine(store, job_id)[job_id]
    assert listed.kind == "fhir-export" and listed.submitted == "2026-12-01T10:00:00.000000Z"


def test_reindex_drops_an_open_row_its_record_left_behind(azurite: Azurite) -> None:
    store = AzureJobStore.connect(azurite.connection_string)
    ended, gone = uuid.uuid4().hex, uuid.uuid4().hex
    store.put_record({**new_record(ended, JobKind.BATCH, {}, "x@example.com", {}), "state": "succeeded"})
    with TableClient.from_connection_string(azurite.connection_string, INDEX_TABLE) as index:
        for job_id in (ended, gone):  # as if the write crashed between the record and its rows
            index.upsert_entity({"PartitionKey": OPEN_PARTITION, "RowKey": job_id, "kind": "batch",
                                 "state": "running", "requested_by": "x@example.com",
                                 "submitted": "2026-12-01T10:00:00.000000Z", "admitted": False})  # fmt: skip
    assert set(mine(store, ended, gone)) == {ended, gone}
    store.reindex(ended)
    store.reindex(gone)
    assert mine(store, ended, gone) == {}
