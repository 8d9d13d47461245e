"""The work store in Azurite behaves as its in-memory twin: patient lists, kept ids by search,
re-runs replacing their own ids, and the clean-up when a job ends."""

from __future__ import annotations

import uuid

import pytest
from azure.storage.blob import ContainerClient

from shared.workstore import CONTAINER, BlobWorkStore, MemoryWorkStore, WorkStore
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


def exercise(store: WorkStore, job_id: str) -> None:
    assert store.patients(job_id) is None
    store.put_patients(job_id, [f"patient-{i:08d}" for i in range(10_000)])
    assert store.patients(job_id) == tuple(f"patient-{i:08d}" for i in range(10_000))
    store.put_kept_ids(job_id, "Patient", 0, 1, ["a", "b"])
    store.put_kept_ids(job_id, "Patient", 0, 2, ["c"])
    store.put_kept_ids(job_id, "Patient", 1, 3, ["d"])
    store.put_kept_ids(job_id, "Observation", 0, 1, ["o"])
    store.put_kept_ids(job_id, "Patient", 0, 2, ["c2"])  # page 2 ran again: its ids replace the old
    assert store.kept_ids(job_id, "Patient", range(1)) == {"a", "b", "c2"}
    assert store.kept_ids(job_id, "Patient", range(2)) == {"a", "b", "c2", "d"}
    assert store.kept_ids(job_id, "Patient", range(0)) == set()
    store.delete_job(job_id)
    store.delete_job(job_id)  # at least once: a second clean-up finds nothing
    assert store.patients(job_id) is None
    assert store.kept_ids(job_id, "Patient", range(2)) == set()


def test_blob_store_matches_the_memory_twin(azurite: Azurite) -> None:
    exercise(MemoryWorkStore(), "j1")
    with ContainerClient.from_connection_string(azurite.connection_string, CONTAINER) as container:
        job_id = uuid.uuid4().hex
        exercise(BlobWorkStore(container), job_id)
        assert list(container.list_blobs(name_starts_with=f"jobs/{job_id}/")) == []
