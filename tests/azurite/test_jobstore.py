"""The job store contract, run against the Azure store on Azurite and against the in-memory twin:
typed updates follow the state table, parts round-trip (large ones too), listing is newest first
with every filter and paging, and the cancel marker sticks."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from shared.jobs import InvalidTransitionError, JobState
from shared.jobstore import AzureJobStore, JobStore, JobUpdate, ListQuery, MemoryJobStore
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture(params=["azure", "memory"])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    if request.param == "memory":
        yield MemoryJobStore()
        return
    azurite: Azurite = request.getfixturevalue("azurite")
    yield AzureJobStore.connect(azurite.connection_string)


def new_job(store: JobStore, created: str = "2026-12-01T10:00:00Z", **fields: Any) -> str:
    job_id = uuid.uuid4().hex
    record = {"id": job_id, "kind": "fhir-export", "state": "queued", "requested_by": "a@example.com",
              "labels": {}, "created": created, **fields}  # fmt: skip
    store.put_record(record)
    return job_id


def test_state_changes_follow_the_table(store: JobStore) -> None:
    job_id = new_job(store)
    for state in ("retrying", "retrying", "running", "succeeded", "succeeded"):
        assert store.update_record(job_id, JobUpdate(JobState(state)))["state"] == state
    with pytest.raises(InvalidTransitionError):
        store.update_record(job_id, JobUpdate(JobState.RUNNING))
    record = store.get_record(job_id)
    assert record is not None and record["state"] == "succeeded"
    assert store.update_record(job_id, JobUpdate(last_error="late note"))["last_error"] == "late note"
    with pytest.raises(KeyError):
        store.update_record(uuid.uuid4().hex, JobUpdate(JobState.RUNNING))


def test_parts_round_trip_in_the_view(store: JobStore) -> None:
    job_id = new_job(store)
    big = {
        "state": "running",
        "files": [{"name": f"Patient-{i}.ndjson", "url": "x" * 200} for i in range(1500)],
    }
    store.put_part(job_id, "Patient", big)
    store.put_part(job_id, "a/b #?\\ weird", {"state": "queued"})
    store.request_cancel(job_id)
    view = store.view(job_id)
    assert view is not None and view.cancel_requested
    assert view.parts["Patient"] == big and view.parts["a/b #?\\ weird"] == {"state": "queued"}
    assert store.get_part(job_id, "Patient") == big
    assert store.get_part(job_id, "Observation") is None
    assert store.cancel_requested(job_id) and not store.cancel_requested(uuid.uuid4().hex)


def test_listing_is_newest_first_with_filters_and_paging(store: JobStore) -> None:
    me = f"{uuid.uuid4().hex[:8]}@example.com"
    ids = [new_job(store, f"2026-11-{day:02d}T08:00:00Z", requested_by=me, labels={"p": str(day % 2)})
           for day in range(1, 11)]  # fmt: skip
    batch = new_job(store, "2026-11-05T09:00:00Z", requested_by=me, kind="batch")
    store.update_record(ids[3], JobUpdate(JobState.RUNNING))

    def listed(**filters: Any) -> list[str]:
        out, continuation = [], None
        while True:
            page = store.list(ListQuery(requested_by=me, limit=3, continuation=continuation, **filters))
            out += [j.job_id for j in page.jobs]
            if page.continuation is None:
                return out
            continuation = page.continuation

    newest_first = [ids[9], ids[8], ids[7], ids[6], ids[5], batch, ids[4], ids[3], ids[2], ids[1], ids[0]]
    assert listed() == newest_first
    assert listed(kind="batch") == [batch]
    assert listed(state="running") == [ids[3]]
    assert listed(label=("p", "0")) == [ids[9], ids[7], ids[5], ids[3], ids[1]]
    assert listed(created_from="2026-11-05T00:00:00Z", created_to="2026-11-06T23:59:59Z") == [
        ids[5],
        batch,
        ids[4],
    ]
    someone_else = store.list(ListQuery(requested_by="nobody-" + me))
    assert someone_else.jobs == [] and someone_else.continuation is None
    mine = store.list(ListQuery(requested_by=me.upper(), limit=1)).jobs
    assert [j.job_id for j in mine] == [ids[9]] and mine[0].kind == "fhir-export"


def test_create_record_creates_once(store: JobStore) -> None:
    record = {"id": uuid.uuid4().hex, "kind": "session", "state": "queued", "requested_by": "a@example.com",
              "labels": {"session": "s1"}, "created": "2026-12-01T10:00:00Z"}  # fmt: skip
    assert store.create_record(record) is True
    assert store.create_record({**record, "state": "failed"}) is False
    assert store.get_record(record["id"])["state"] == "queued"  # type: ignore[index]
    page = store.list(ListQuery(label=("session", "s1"), kind="session"))
    assert [j.job_id for j in page.jobs if j.job_id == record["id"]] == [record["id"]]  # one index row


def test_indexed_labels_list_from_their_own_partition(store: JobStore) -> None:
    study = uuid.uuid4().hex
    mine = [new_job(store, kind="session", labels={"study": study, "session": f"s{i}"}) for i in range(3)]
    new_job(store, kind="session", labels={"study": "other"})
    page = store.list(ListQuery(label=("study", study), kind="session"))
    assert sorted(j.job_id for j in page.jobs) == sorted(mine)
    # A label learnt later (a session's study) lists the job under it too.
    late = new_job(store, kind="session", labels={"session": "late"})
    store.update_record(late, JobUpdate(labels={"session": "late", "study": study}))
    assert late in [j.job_id for j in store.list(ListQuery(label=("study", study))).jobs]


def test_markers_round_trip_beside_the_record(store: JobStore) -> None:
    job_id = new_job(store)
    assert store.get_marker(job_id, "completed") is None
    store.put_marker(job_id, "completed", {"study_id": "st"})
    assert store.get_marker(job_id, "completed") == {"study_id": "st"}


def test_an_update_racing_another_writer_applies_to_what_that_writer_wrote(azurite: Azurite) -> None:
    """The admission check writes a job's record while its orchestration or the reconciler may
    settle it: the slower writer must not put the older state back (the ETag makes it re-read)."""
    store = AzureJobStore.connect(azurite.connection_string)
    job_id = new_job(store)
    upload = store._c.upload_blob
    raced = []

    def settle_first(*args: Any, **kwargs: Any) -> Any:
        if "match_condition" in kwargs and not raced:  # update_record's write, after its read
            raced.append(True)
            store.update_record(job_id, JobUpdate(JobState.CANCELLED, last_error="cancelled meanwhile"))
        return upload(*args, **kwargs)

    store._c.upload_blob = settle_first  # type: ignore[method-assign]
    try:
        updated = store.update_record(job_id, JobUpdate(admission={"run": 0, "waiting": "behind 1 job"}))
    finally:
        store._c.upload_blob = upload  # type: ignore[method-assign]
    assert raced
    record = store.get_record(job_id)
    assert record == updated
    assert (
        record is not None
        and record["state"] == "cancelled"
        and record["last_error"] == "cancelled meanwhile"
    )
    assert record["admission"] == {"run": 0, "waiting": "behind 1 job"}
