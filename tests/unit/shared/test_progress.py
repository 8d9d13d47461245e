"""Orchestration contracts: file bookkeeping helpers and strict, versioned round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.contracts import (
    CommitResult,
    CommitTask,
    ExportOutcome,
    FileState,
    OutputFile,
    PageResult,
    PageTask,
    TypeCheckpoint,
    file_name,
    parse_export_request,
)
from shared.errors import ValidationError
from shared.jobs import JobState
from shared.progress import MAX_BLOCKS_PER_FILE

pytestmark = pytest.mark.unit


def _request() -> Any:
    request, _ = parse_export_request(
        {
            "source": {"kind": "fhir", "base_url": "http://127.0.0.1:1/fhir", "types": ["Patient"]},
            "destination": {"kind": "blob", "container": "exports"},
            "requested_by": "a@example.org",
        }
    )
    return request


def test_file_names_follow_the_bulk_data_convention() -> None:
    assert file_name("Patient", 1) == "Patient-1.ndjson"
    assert FileState.start("Observation", 3).name == "Observation-3.ndjson"


def test_file_state_tracks_staged_and_committed_totals() -> None:
    f = FileState.start("Patient", 1).with_block("b0", 100, 10).with_block("b1", 50, 5)
    assert (f.blocks, f.staged_bytes, f.resources) == (("b0", "b1"), 150, 15)
    assert f.pending and f.committed_bytes == 0
    committed = f.mark_committed()
    assert (committed.committed_bytes, committed.committed_resources, committed.pending) == (150, 15, False)
    assert f.blocks == ("b0", "b1")  # frozen: the original is unchanged


def test_a_block_id_cannot_be_counted_twice() -> None:
    with pytest.raises(ValueError, match="already part"):
        FileState.start("Patient", 1).with_block("b0", 1, 1).with_block("b0", 1, 1)


def test_rollover_on_size_or_block_count() -> None:
    f = FileState.start("Patient", 1).with_block("b0", 1023, 1)
    assert not f.is_full(1024)
    assert f.with_block("b1", 1, 1).is_full(1024)
    many = FileState(
        type="Patient",
        sequence=1,
        name="Patient-1.ndjson",
        blocks=tuple(map(str, range(MAX_BLOCKS_PER_FILE))),
    )
    assert many.is_full(2**40)


def _roundtrip(obj: Any) -> Any:
    return type(obj).from_dict(json.loads(json.dumps(obj.to_dict())))


@pytest.mark.parametrize(
    "contract",
    [
        TypeCheckpoint(type="Patient"),
        TypeCheckpoint(
            type="Patient",
            cursor="https://127.0.0.1/fhir?_getpages=x&_page=3",
            pages_done=3,
            files=(
                FileState.start("Patient", 1).with_block("b", 9, 1).mark_committed(),
                FileState.start("Patient", 2),
            ),
            done=True,
            consecutive_failures=2,
        ),
        PageResult(
            type="Patient", page=4, file_name="Patient-1.ndjson", block_id="b4", size_bytes=10, resources=2
        ),
        PageResult(type="Patient", page=4, file_name="Patient-1.ndjson", block_id="b4", error="HTTP 400"),
        CommitResult(
            type="Patient", file_name="Patient-1.ndjson", block_count=3, committed_bytes=9, url="http://x/y"
        ),
        ExportOutcome(
            job_id="j1",
            state=JobState.SUCCEEDED,
            files=(
                OutputFile(
                    type="Patient", name="Patient-1.ndjson", url="http://x/y", resources=2, size_bytes=9
                ),
            ),
            resources=2,
        ),
        ExportOutcome(
            job_id="j2", state=JobState.FAILED, failed_types=("Observation",), error="too many failures"
        ),
    ],
)
def test_contracts_round_trip(contract: Any) -> None:
    assert contract.to_dict()["schema_version"] == 1
    assert _roundtrip(contract) == contract


def test_tasks_round_trip_with_the_request() -> None:
    request = _request()
    page = PageTask(job_id="j", request=request, type="Patient", cursor=None, page=0, file_sequence=1)
    commit = CommitTask(job_id="j", request=request, file=FileState.start("Patient", 1).with_block("b", 1, 1))
    assert _roundtrip(page) == page
    assert _roundtrip(commit) == commit


def test_last_page_is_known_from_the_cursor() -> None:
    def result(next_cursor: str | None = None, error: str | None = None) -> PageResult:
        return PageResult(
            type="Patient", page=0, file_name="f", block_id="b", next_cursor=next_cursor, error=error
        )

    assert result().last_page
    assert not result(next_cursor="c").last_page
    assert not result(error="bad").last_page


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"schema_version": 1, "type": "Patient", "extra": 1}, "extra"),
        ({"schema_version": 9, "type": "Patient"}, "schema_version"),
        (
            {"type": "Patient", "files": [{"type": "Patient", "sequence": 0, "name": "n"}]},
            "files[0].sequence",
        ),
        (
            {"type": "Patient", "files": [{"type": "Patient", "sequence": 1, "name": "n", "x": 1}]},
            "files[0].x",
        ),
        ({"type": "Patient", "pages_done": -1}, "pages_done"),
        ({"type": "Patient", "done": "yes"}, "done"),
    ],
)
def test_checkpoint_reader_is_strict(data: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        TypeCheckpoint.from_dict(data)
    assert info.value.field == field


def test_outcome_state_must_be_a_job_state() -> None:
    with pytest.raises(ValidationError) as info:
        ExportOutcome.from_dict({"job_id": "j", "state": "exploded"})
    assert info.value.field == "state"
