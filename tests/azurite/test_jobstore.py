"""Job records in Azurite: state changes follow the transition table; re-writes are harmless."""

from __future__ import annotations

import uuid

import pytest

from shared.jobs import InvalidTransitionError
from shared.jobstore import JobStore
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


def new_job(store: JobStore) -> str:
    job_id = uuid.uuid4().hex
    store.put_record(
        {"id": job_id, "state": "queued", "requested_by": "a@example.com", "labels": {}, "created": "x"}
    )
    return job_id


def test_state_changes_follow_the_table(azurite: Azurite) -> None:
    store = JobStore.connect(azurite.connection_string)
    job_id = new_job(store)
    for state in ("retrying", "retrying", "running", "succeeded", "succeeded"):
        assert store.update_record(job_id, state=state)["state"] == state
    with pytest.raises(InvalidTransitionError):
        store.update_record(job_id, state="running")
    assert store.get_record(job_id)["state"] == "succeeded"  # type: ignore[index]
    assert store.update_record(job_id, note="no state change")["note"] == "no state change"
