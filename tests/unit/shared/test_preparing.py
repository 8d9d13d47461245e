"""A job whose preparation fails for now shows `retrying` and why at once, while the retry
policy runs it again (`shared.preparing`, called by the export's and the batch's prepare); a job
that ended meanwhile keeps its end, and a store that does not answer changes nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from shared import batching, exporting
from shared.batch_contracts import parse_batch_request
from shared.batch_tasks import BatchInput
from shared.contracts import parse_export_request
from shared.deps import Deps
from shared.errors import TransientError
from shared.export_tasks import JobInput
from shared.jobs import JobState
from shared.jobstore import JobKind, JobUpdate, new_record
from shared.preparing import note_retrying
from tests.unit.shared.test_admitting import make_deps

pytestmark = pytest.mark.unit

DOWN = TransientError("metadata http://127.0.0.1:9/fhir/metadata: connection failed (ConnectError)")


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    return make_deps(tmp_path)


def queued(deps: Deps, job_id: str, kind: JobKind = JobKind.FHIR_EXPORT) -> str:
    deps.jobs.put_record(new_record(job_id, kind, {}, "a@example.com", {}))
    return job_id


def state(deps: Deps, job_id: str) -> tuple[str, str | None]:
    record = deps.jobs.get_record(job_id)
    assert record is not None
    return record["state"], record.get("last_error")


class Unreachable:
    def check_connection(self) -> None:
        raise DOWN


def test_a_failed_attempt_shows_the_job_retrying_and_why(deps: Deps) -> None:
    note_retrying(deps, queued(deps, "j1"), DOWN)
    assert state(deps, "j1") == ("retrying", str(DOWN))
    note_retrying(deps, "j1", TransientError("still down"))  # every attempt says the latest
    assert state(deps, "j1") == ("retrying", "still down")


def test_a_job_that_ended_meanwhile_keeps_its_end(deps: Deps) -> None:
    deps.jobs.update_record(queued(deps, "j1"), JobUpdate(JobState.CANCELLED))
    note_retrying(deps, "j1", DOWN)
    assert state(deps, "j1") == ("cancelled", None)


def test_a_store_that_does_not_answer_changes_nothing(deps: Deps, monkeypatch: pytest.MonkeyPatch) -> None:
    def down(*args: Any) -> None:
        raise TransientError("job store unavailable")

    monkeypatch.setattr(deps.jobs, "update_record", down)
    note_retrying(deps, queued(deps, "j1"), DOWN)  # no exception: the caller raises its own
    assert state(deps, "j1") == ("queued", None)


def test_the_exports_preparation_notes_a_transient_failure_and_raises_it(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, _ = parse_export_request({
        "source": {"kind": "fhir", "base_url": "http://127.0.0.1:9/fhir", "types": ["Patient"]},
        "destination": {"kind": "blob", "container": "exports"}, "requested_by": "a@example.com",
    })  # fmt: skip
    monkeypatch.setattr(exporting, "_destination", lambda request, deps, job_id: Unreachable())
    with pytest.raises(TransientError):
        exporting.prepare(JobInput(job_id=queued(deps, "e1"), request=request), deps)
    assert state(deps, "e1") == ("retrying", str(DOWN))


def test_the_batchs_preparation_notes_a_transient_failure_and_raises_it(
    deps: Deps, monkeypatch: pytest.MonkeyPatch
) -> None:
    request, _, _ = parse_batch_request(
        {"source": {"kind": "url"}, "items": ["http://127.0.0.1:9/a"],
         "destination": {"kind": "blob", "container": "exports"}, "requested_by": "a@example.com"},
        job_id="b1", default_container="exports",
    )  # fmt: skip

    def unreachable(*args: Any) -> None:
        raise DOWN

    monkeypatch.setattr(batching, "check_destination", unreachable)
    with pytest.raises(TransientError):
        batching.prepare(BatchInput(job_id=queued(deps, "b1", JobKind.BATCH), request=request), deps)
    assert state(deps, "b1") == ("retrying", str(DOWN))
