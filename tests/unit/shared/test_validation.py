"""The DataValidator: verdicts on clean, missing, extra, duplicated and malformed exports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import PermanentError, RetryAfterError, TransientError
from shared.sources.base import Page
from shared.validation import (
    expected_ids_from_source,
    iter_export_files,
    split_lines,
    validate_export,
)

pytestmark = pytest.mark.unit


def line(resource_type: str, resource_id: str, **fields: Any) -> bytes:
    return json.dumps({"resourceType": resource_type, "id": resource_id, **fields}).encode() + b"\n"


def lines(resource_type: str, *ids: str) -> list[bytes]:
    return [line(resource_type, i) for i in ids]


EXPECTED = {"Patient": ["p1", "p2", "p3"], "Observation": ["o1", "o2"]}


def test_clean_export_is_valid() -> None:
    report = validate_export(
        EXPECTED,
        [
            ("job/Patient-1.ndjson", lines("Patient", "p1", "p2")),
            ("job/Patient-2.ndjson", lines("Patient", "p3")),
            ("job/Observation-1.ndjson", lines("Observation", "o2", "o1")),
        ],
    )
    assert report.ok, report.render()
    patient = report.for_type("Patient")
    assert (patient.expected, patient.exported, patient.files) == (
        3,
        3,
        ("job/Patient-1.ndjson", "job/Patient-2.ndjson"),
    )
    assert report.render().startswith("export is VALID")


def test_missing_ids_are_reported_with_a_sample() -> None:
    report = validate_export(
        EXPECTED,
        [
            ("Patient-1.ndjson", lines("Patient", "p2")),
            ("Observation-1.ndjson", lines("Observation", "o1", "o2")),
        ],
    )
    assert not report.ok
    patient = report.for_type("Patient")
    assert (patient.missing_count, patient.missing_sample) == (2, ("p1", "p3"))
    assert report.for_type("Observation").ok
    text = report.render()
    assert "1 of 2 types failed" in text and "missing 2: p1, p3" in text


def test_a_type_with_no_files_is_all_missing() -> None:
    report = validate_export(EXPECTED, [("Patient-1.ndjson", lines("Patient", "p1", "p2", "p3"))])
    assert report.for_type("Observation").missing_count == 2 and not report.ok


def test_extra_ids_and_unexpected_types_are_reported() -> None:
    report = validate_export(
        {"Patient": ["p1"]},
        [
            ("Patient-1.ndjson", lines("Patient", "p1", "p9")),
            ("Encounter-1.ndjson", lines("Encounter", "e1")),
        ],
    )
    assert report.for_type("Patient").extra_sample == ("p9",)
    encounter = report.for_type("Encounter")
    assert (encounter.expected, encounter.extra_count) == (0, 1)
    assert not report.ok


def test_duplicates_within_and_across_files() -> None:
    report = validate_export(
        {"Patient": ["p1", "p2"]},
        [
            ("Patient-1.ndjson", lines("Patient", "p1", "p2", "p1")),
            ("Patient-2.ndjson", lines("Patient", "p2")),
        ],
    )
    patient = report.for_type("Patient")
    assert (patient.duplicate_count, patient.duplicate_sample) == (2, ("p1", "p2"))
    assert patient.missing_count == 0 and patient.exported == 4
    assert "duplicated 2: p1, p2" in report.render()


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        (line("Observation", "o1"), "resourceType 'Observation' in a file of Patient"),
        (b'{"resourceType": "Patient", "id": "p3"\n', "not JSON"),
        (b"[1, 2]\n", "not a JSON object"),
        (b'{"resourceType": "Patient"}\n', "no id"),
        (b"\n", "empty line"),
        (b'{"resourceType": "Patient", "id": "p3"}', "no trailing newline"),
    ],
)
def test_bad_lines_are_reported_with_file_and_line_number(bad: bytes, problem: str) -> None:
    report = validate_export(
        {"Patient": ["p1", "p2"]}, [("x/Patient-1.ndjson", [*lines("Patient", "p1", "p2"), bad])]
    )
    patient = report.for_type("Patient")
    assert patient.bad_line_count == 1 and not report.ok
    assert patient.bad_line_sample[0].startswith("Patient-1.ndjson:3: ")
    assert problem in patient.bad_line_sample[0]


def test_newline_can_be_optional_for_callers_that_split_lines_themselves() -> None:
    report = validate_export(
        {"Patient": ["p1"]},
        [("Patient-1.ndjson", [b'{"resourceType":"Patient","id":"p1"}'])],
        require_newline=False,
    )
    assert report.ok


def test_file_problems_names_and_numbering() -> None:
    report = validate_export(
        {"Patient": ["p1", "p2"]},
        [
            ("Patient-1.ndjson", lines("Patient", "p1")),
            ("Patient-3.ndjson", lines("Patient", "p2")),
            ("patients.ndjson", lines("Patient", "p1")),
            ("Patient-1.ndjson", lines("Patient", "p1")),
        ],
    )
    assert report.for_type("Patient").ok  # the ids are right, the files are not
    assert not report.ok
    assert report.file_problems == (
        "patients.ndjson: not named Type-N.ndjson; not read",
        "Patient-1.ndjson: listed twice",
        "Patient: file numbers [1, 3] are not 1..2",
    )


def test_samples_are_bounded_but_counts_are_exact() -> None:
    expected = {"Patient": [f"p{i:03d}" for i in range(100)]}
    report = validate_export(expected, [], sample_size=3)
    patient = report.for_type("Patient")
    assert (patient.missing_count, patient.missing_sample) == (100, ("p000", "p001", "p002"))
    assert "(+97 more)" in report.render()


# -- split_lines and blob reading --------------------------------------------------------------


@given(
    st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\n", b"")), max_size=20),
    st.lists(st.integers(min_value=0, max_value=60), max_size=30),
    st.booleans(),
)
def test_split_lines_recovers_lines_across_any_chunking(
    pieces: list[bytes], cuts: list[int], terminated: bool
) -> None:
    data = b"\n".join(pieces) + (b"\n" if terminated and pieces else b"")
    chunks, rest = [], data
    for cut in cuts:
        chunks.append(rest[:cut])
        rest = rest[cut:]
    chunks.append(rest)
    out = list(split_lines(chunks))
    assert b"".join(out) == data
    assert all(item.endswith(b"\n") for item in out[:-1])
    assert all(b"\n" not in item[:-1] for item in out)
    assert len(out) == data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


@dataclass
class FakeBlob:
    name: str


class FakeDownloader:
    def __init__(self, data: bytes) -> None:
        self.data = data

    def chunks(self) -> Iterator[bytes]:
        for start in range(0, len(self.data), 7):
            yield self.data[start : start + 7]


class FakeContainer:
    """The two ContainerClient calls the validator uses."""

    def __init__(self, blobs: dict[str, bytes]) -> None:
        self.blobs = blobs
        self.downloads: list[str] = []

    def list_blobs(self, name_starts_with: str | None = None) -> Iterator[FakeBlob]:
        for name in sorted(self.blobs):
            if name.startswith(name_starts_with or ""):
                yield FakeBlob(name)

    def download_blob(self, name: str) -> FakeDownloader:
        self.downloads.append(name)
        return FakeDownloader(self.blobs[name])


def test_export_files_are_read_from_the_container_under_the_prefix() -> None:
    container = FakeContainer(
        {
            "job1/Patient-1.ndjson": b"".join(lines("Patient", "p1", "p2")),
            "job1/Patient-2.ndjson": b"".join(lines("Patient", "p3")),
            "job1/manifest.json": b"{}",
            "job2/Patient-1.ndjson": b"".join(lines("Patient", "zz")),
        }
    )
    report = validate_export({"Patient": ["p1", "p2", "p3"]}, iter_export_files(container, "job1/"))  # type: ignore[arg-type]
    assert report.ok, report.render()
    assert container.downloads == ["job1/Patient-1.ndjson", "job1/Patient-2.ndjson"]


# -- expected ids from a source ----------------------------------------------------------------


class ScriptedSource:
    """Serves pages of Patient ids; raises the scripted errors first."""

    def __init__(self, pages: list[list[str]], errors: list[Exception]) -> None:
        self.pages = pages
        self.errors = errors
        self.calls: list[str | None] = []

    def check_connection(self) -> None:
        return None

    def fetch_page(self, resource_type: str, cursor: str | None) -> Page:
        self.calls.append(cursor)
        if self.errors:
            raise self.errors.pop(0)
        index = int(cursor or 0)
        body = b"".join(line(resource_type, i) for i in self.pages[index])
        next_cursor = str(index + 1) if index + 1 < len(self.pages) else None
        return Page(resource_type, body, len(self.pages[index]), next_cursor)


def test_expected_ids_page_through_the_source_and_retry_transient_errors() -> None:
    source = ScriptedSource([["a", "b"], ["c"]], [RetryAfterError("busy", 3.0), TransientError("blip")])
    slept: list[float] = []
    ids = expected_ids_from_source(source, ["Patient"], sleep=slept.append)
    assert list(ids["Patient"]) == ["a", "b", "c"]
    assert slept == [3.0, 4.0]  # Retry-After honoured, then exponential backoff
    assert source.calls == [None, None, None, "1"]


def test_expected_ids_give_up_after_the_attempts() -> None:
    source = ScriptedSource([["a"]], [TransientError("down")] * 3)
    with pytest.raises(TransientError):
        list(expected_ids_from_source(source, ["Patient"], attempts=3, sleep=lambda _s: None)["Patient"])


def test_expected_ids_do_not_retry_permanent_errors() -> None:
    source = ScriptedSource([["a"]], [PermanentError("forbidden")])
    with pytest.raises(PermanentError):
        list(expected_ids_from_source(source, ["Patient"], sleep=lambda _s: None)["Patient"])
    assert len(source.calls) == 1
