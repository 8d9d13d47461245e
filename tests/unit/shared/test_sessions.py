"""A session's way in, on the in-memory job store: the session-completed message is checked
(`parse_completion`), and new generated data (`blob_arrived`) or the message
(`session_completed`) opens the session's job, once, or its next run when it had ended."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared.config import Settings
from shared.deps import Deps
from shared.errors import ValidationError
from shared.jobstore import ListQuery, MemoryJobStore
from shared.secrets.local import LocalSecretStore
from shared.session_tasks import COMPLETED_MARKER, part_name, session_job_id
from shared.sessions import (
    AUTO_REQUESTER,
    MAX_MESSAGE_BYTES,
    Opened,
    SessionCompleted,
    blob_arrived,
    parse_completion,
    session_completed,
    split_blob_path,
)

pytestmark = pytest.mark.unit

DESTINATION = {"kind": "blob", "container": "exported"}
AUTO_EXPORT = {
    "apps": {
        "recon": {"timing": "as_available", "destination": DESTINATION},
        "report": {"timing": "session_end", "destination": DESTINATION},
        "off": {"enabled": False, "destination": DESTINATION},
    }
}


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "AUTO_EXPORT_CONFIG": json.dumps(AUTO_EXPORT)}
    return Deps(
        settings=Settings.from_env(env),
        secrets=LocalSecretStore(tmp_path / "secrets"),
        jobs=MemoryJobStore(),
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))),
        smart=cast(Any, None),
    )


def message(**fields: Any) -> str:
    return json.dumps({"session_id": "s1", "app": "recon", **fields})


def refused(text: str | bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_completion(text)
    return caught.value


def completion(**fields: Any) -> SessionCompleted:
    return parse_completion(message(**fields))


def end(deps: Deps, job_id: str, state: str = "succeeded", run: int = 0) -> None:
    """Record the job as ended, as its orchestration would have."""
    record = deps.jobs.get_record(job_id)
    assert record is not None
    deps.jobs.put_record({**record, "state": state, "run": run, "finished": "2024-05-01T12:00:00Z"})


def done_part(deps: Deps, job_id: str, path: str, etag: str, state: str = "succeeded") -> None:
    deps.jobs.put_part(job_id, part_name(path), {"item": path, "state": state, "etag": etag})


RECON_S1 = session_job_id("recon", "s1")
EVERY_JOB = ListQuery(limit=100)


# --- parse_completion ----------------------------------------------------------------------------


def test_a_minimal_completion_message_is_read() -> None:
    read = parse_completion(message())
    assert (read.session_id, read.app) == ("s1", "recon")
    assert read.study_id is None and read.prefix is None and read.items is None and read.requested_by is None
    assert read.folder() == "recon/s1/"


def test_a_full_completion_message_is_read() -> None:
    read = completion(
        study_id="st-9",
        prefix="recon/s1/series-2",
        items=["a.dcm", "sub/b.dcm"],
        requested_by="tech@example.org",
    )
    assert read.study_id == "st-9" and read.requested_by == "tech@example.org"
    assert read.items == ("a.dcm", "sub/b.dcm")
    assert read.folder() == "recon/s1/series-2/"


def test_a_completion_message_may_come_as_bytes() -> None:
    assert parse_completion(message().encode()).session_id == "s1"


@pytest.mark.parametrize("text", ["not json", "{", b"\xff\xfe{", ""])
def test_a_message_that_is_not_json_is_refused(text: str | bytes) -> None:
    error = refused(text)
    assert (error.field, error.detail) == ("message", "is not a JSON object")


def test_a_json_message_that_is_not_an_object_is_refused() -> None:
    refused("[1, 2]")


def test_a_message_without_a_session_id_names_the_field() -> None:
    error = refused(json.dumps({"app": "recon"}))
    assert (error.field, error.detail) == ("session_id", "is required")


def test_a_message_without_an_app_names_the_field() -> None:
    assert refused(json.dumps({"session_id": "s1"})).field == "app"


def test_a_number_is_not_a_session_id() -> None:
    error = refused(message(session_id=5))
    assert (error.field, error.detail) == ("session_id", "must be a string")


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"session_id": "../s1"}, "session_id"),
        ({"session_id": "s/1"}, "session_id"),
        ({"session_id": ""}, "session_id"),
        ({"session_id": "s" * 129}, "session_id"),
        ({"app": "bad app"}, "app"),
        ({"study_id": "st/1"}, "study_id"),
        ({"requested_by": "not-an-address"}, "requested_by"),
        ({"prefix": ""}, "prefix"),
        ({"unexpected": True}, "unexpected"),
    ],
)
def test_bad_fields_are_named(fields: dict[str, Any], field: str) -> None:
    assert refused(message(**fields)).field == field


@pytest.mark.parametrize("prefix", ["recon/s2", "recon/s1x", "recon/s1x/", "recon", "report/s1/", "s1/"])
def test_a_prefix_outside_the_session_folder_is_refused(prefix: str) -> None:
    error = refused(message(prefix=prefix))
    assert error.field == "prefix" and "'recon/s1/'" in error.detail


@pytest.mark.parametrize(
    ("prefix", "folder"),
    [
        ("recon/s1", "recon/s1/"),
        ("recon/s1/", "recon/s1/"),
        ("recon/s1/series-2", "recon/s1/series-2/"),
        ("recon/s1/series-2/", "recon/s1/series-2/"),
    ],
)
def test_a_prefix_equal_to_or_under_the_session_folder_is_accepted(prefix: str, folder: str) -> None:
    assert completion(prefix=prefix).folder() == folder


@pytest.mark.parametrize("prefix", ["recon/s1/../s2", "recon/s1/../../other/s9", "recon//s1"])
def test_a_prefix_that_leaves_the_session_folder_through_dots_or_empty_segments_is_refused(
    prefix: str,
) -> None:
    assert refused(message(prefix=prefix)).field == "prefix"


@pytest.mark.parametrize(
    ("items", "field"),
    [
        (["ok.dcm", "../other/s2/x.dcm"], "items[1]"),
        (["a/../b.dcm"], "items[0]"),
        (["/abs.dcm"], "items[0]"),
        (["ok.dcm", "sub/", "x"], "items[1]"),
        (["a//b.dcm"], "items[0]"),
        (["./a.dcm"], "items[0]"),
    ],
)
def test_items_that_are_not_plain_paths_in_the_folder_are_refused(items: list[str], field: str) -> None:
    assert refused(message(items=items)).field == field


def test_an_empty_item_list_is_refused() -> None:
    error = refused(message(items=[]))
    assert error.field == "items" and "at least one item" in error.detail


def test_a_message_larger_than_the_limit_is_refused() -> None:
    big = message(items=["x" * 1000] * (MAX_MESSAGE_BYTES // 1000 + 1))
    assert len(big.encode()) > MAX_MESSAGE_BYTES
    error = refused(big)
    assert error.field == "message" and str(MAX_MESSAGE_BYTES) in error.detail
    assert refused(big.encode()).field == "message"


# --- split_blob_path -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("recon/s1/a.dcm", ("recon", "s1", "a.dcm")),
        ("recon/s1/series-2/deep/a.dcm", ("recon", "s1", "series-2/deep/a.dcm")),
        ("ct.recon_2/2024-05-01.7/x", ("ct.recon_2", "2024-05-01.7", "x")),
    ],
)
def test_a_blob_path_splits_into_app_session_and_path(name: str, parts: tuple[str, str, str]) -> None:
    assert split_blob_path(name) == parts


@pytest.mark.parametrize("name", ["a.dcm", "recon/s1", "recon/s1/", "-bad/s1/a.dcm", "bad app/s1/a.dcm", ""])
def test_a_blob_outside_an_app_session_folder_does_not_split(name: str) -> None:
    assert split_blob_path(name) is None


def test_a_blob_with_an_empty_session_folder_does_not_split() -> None:
    assert split_blob_path("recon//a.dcm") is None


# --- blob_arrived --------------------------------------------------------------------------------


def test_new_data_creates_the_session_job(deps: Deps) -> None:
    opened = blob_arrived("recon/s1/series-1/a.dcm", '"0x1"', deps)
    assert opened is not None and opened.job_id == RECON_S1 and not opened.reopen
    assert (opened.input.job_id, opened.input.app, opened.input.session_id) == (RECON_S1, "recon", "s1")
    assert opened.input.run == 0 and not opened.input.started
    record = deps.jobs.get_record(RECON_S1)
    assert record is not None
    assert (record["kind"], record["state"], record["requested_by"]) == ("session", "queued", AUTO_REQUESTER)
    assert record["labels"] == {"app": "recon", "session": "s1"}
    assert record["request"] == {"app": "recon", "session_id": "s1"}


def test_more_data_for_an_active_job_finds_it_without_creating_another(deps: Deps) -> None:
    first = blob_arrived("recon/s1/a.dcm", '"0x1"', deps)
    record = deps.jobs.get_record(RECON_S1)
    deps.jobs.put_record({**record, "state": "running", "run": 2})  # type: ignore[dict-item]
    second = blob_arrived("recon/s1/b.dcm", '"0x2"', deps)
    assert first is not None and second is not None
    assert second.job_id == first.job_id and not second.reopen and second.input.run == 2
    assert deps.jobs.get_record(RECON_S1)["state"] == "running"  # type: ignore[index]
    assert len(deps.jobs.list(EVERY_JOB).jobs) == 1


def test_the_same_blob_twice_finds_the_queued_job(deps: Deps) -> None:
    assert blob_arrived("recon/s1/a.dcm", '"0x1"', deps) is not None
    again = blob_arrived("recon/s1/a.dcm", '"0x1"', deps)
    assert again == Opened(RECON_S1, again.input) and again.input.run == 0  # type: ignore[union-attr]


def test_different_sessions_and_apps_get_different_jobs(deps: Deps) -> None:
    a = blob_arrived("recon/s1/a.dcm", "0x1", deps)
    b = blob_arrived("recon/s2/a.dcm", "0x1", deps)
    assert a is not None and b is not None and a.job_id != b.job_id
    assert b.job_id == session_job_id("recon", "s2")


@pytest.mark.parametrize(
    "name",
    [
        "unknown/s1/a.dcm",  # no such app
        "off/s1/a.dcm",  # disabled
        "report/s1/a.dcm",  # exports only at the session's end
        "recon/s1",  # not under {app}/{session}/
        "a.dcm",
    ],
)
def test_data_that_is_not_exported_as_it_appears_opens_nothing(deps: Deps, name: str) -> None:
    assert blob_arrived(name, '"0x1"', deps) is None
    assert deps.jobs.list(EVERY_JOB).jobs == []


def test_a_blob_already_done_at_this_version_does_not_reopen_an_ended_job(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", '"0x1"', deps)
    done_part(deps, RECON_S1, "a.dcm", "0x1")  # parts keep the bare spelling
    end(deps, RECON_S1)
    assert blob_arrived("recon/s1/a.dcm", '"0x1"', deps) is None  # the trigger's quoted spelling
    assert blob_arrived("recon/s1/a.dcm", "0x1", deps) is None
    assert deps.jobs.get_record(RECON_S1)["state"] == "succeeded"  # type: ignore[index]


@pytest.mark.parametrize("state", ["succeeded", "failed", "skipped", "cancelled"])
def test_every_done_part_state_counts_as_done(deps: Deps, state: str) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    done_part(deps, RECON_S1, "a.dcm", "0x1", state=state)
    end(deps, RECON_S1)
    assert blob_arrived("recon/s1/a.dcm", '"0x1"', deps) is None


def test_a_changed_blob_reopens_an_ended_job_for_its_next_run(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", '"0x1"', deps)
    done_part(deps, RECON_S1, "a.dcm", "0x1")
    end(deps, RECON_S1, run=2)
    opened = blob_arrived("recon/s1/a.dcm", '"0x2"', deps)
    assert opened is not None and opened.reopen and opened.input.run == 3
    assert opened.job_id == RECON_S1
    # The trigger writes nothing: the next run's first scan records the job running again.
    assert deps.jobs.get_record(RECON_S1)["state"] == "succeeded"  # type: ignore[index]


def test_a_new_blob_reopens_an_ended_job(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    done_part(deps, RECON_S1, "a.dcm", "0x1")
    end(deps, RECON_S1, state="failed")
    opened = blob_arrived("recon/s1/b.dcm", "0x9", deps)
    assert opened is not None and opened.reopen and opened.input.run == 1


def test_a_part_not_yet_done_at_this_version_reopens_an_ended_job(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    deps.jobs.put_part(RECON_S1, "a.dcm", {"item": "a.dcm", "state": "queued", "etag": "0x1"})
    end(deps, RECON_S1)
    opened = blob_arrived("recon/s1/a.dcm", "0x1", deps)
    assert opened is not None and opened.reopen


def test_a_long_path_is_looked_up_by_its_part_name(deps: Deps) -> None:
    path = "deep/" * 120 + "a.dcm"
    blob_arrived(f"recon/s1/{path}", "0x1", deps)
    done_part(deps, RECON_S1, path, "0x1")
    end(deps, RECON_S1)
    assert blob_arrived(f"recon/s1/{path}", '"0x1"', deps) is None


def test_a_cancelled_job_never_reopens(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    end(deps, RECON_S1, state="cancelled")
    assert blob_arrived("recon/s1/a.dcm", "0x2", deps) is None
    assert blob_arrived("recon/s1/new.dcm", "0x3", deps) is None
    assert session_completed(completion(items=["a.dcm"]), deps) is None
    assert deps.jobs.get_record(RECON_S1)["state"] == "cancelled"  # type: ignore[index]


# --- session_completed ---------------------------------------------------------------------------


def test_a_completion_creates_the_job_and_keeps_the_message(deps: Deps) -> None:
    opened = session_completed(completion(study_id="st-9"), deps)
    assert opened is not None and opened.job_id == RECON_S1 and not opened.reopen and opened.input.run == 0
    record = deps.jobs.get_record(RECON_S1)
    assert record is not None
    assert (record["kind"], record["state"], record["requested_by"]) == ("session", "queued", AUTO_REQUESTER)
    assert record["labels"] == {"app": "recon", "session": "s1", "study": "st-9"}
    assert deps.jobs.get_marker(RECON_S1, COMPLETED_MARKER) == {
        "session_id": "s1",
        "app": "recon",
        "study_id": "st-9",
        "prefix": "recon/s1/",
        "items": None,
    }


def test_a_completion_names_who_the_job_is_for(deps: Deps) -> None:
    session_completed(completion(requested_by="tech@example.org"), deps)
    assert deps.jobs.get_record(RECON_S1)["requested_by"] == "tech@example.org"  # type: ignore[index]


def test_a_completion_keeps_its_prefix_as_a_folder_and_its_items(deps: Deps) -> None:
    session_completed(completion(prefix="recon/s1/series-2", items=["a.dcm", "b.dcm"]), deps)
    marker = deps.jobs.get_marker(RECON_S1, COMPLETED_MARKER)
    assert (
        marker is not None
        and marker["prefix"] == "recon/s1/series-2/"
        and marker["items"] == ["a.dcm", "b.dcm"]
    )


def test_a_completion_without_a_study_has_no_study_label(deps: Deps) -> None:
    session_completed(completion(), deps)
    assert deps.jobs.get_record(RECON_S1)["labels"] == {"app": "recon", "session": "s1"}  # type: ignore[index]


def test_a_completion_for_a_job_opened_by_data_finds_it(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    opened = session_completed(completion(study_id="st-9", requested_by="tech@example.org"), deps)
    assert opened is not None and opened.job_id == RECON_S1 and not opened.reopen
    record = deps.jobs.get_record(RECON_S1)
    # The record is the orchestration's: the trigger leaves it as the data created it.
    assert record is not None and record["requested_by"] == AUTO_REQUESTER and "study" not in record["labels"]
    assert deps.jobs.get_marker(RECON_S1, COMPLETED_MARKER) is not None


def test_a_completion_for_a_session_end_app_opens_its_job(deps: Deps) -> None:
    opened = session_completed(completion(app="report"), deps)
    assert opened is not None and opened.job_id == session_job_id("report", "s1")


def test_a_repeated_completion_on_an_ended_job_opens_nothing(deps: Deps) -> None:
    assert session_completed(completion(study_id="st-9"), deps) is not None
    end(deps, RECON_S1)
    assert session_completed(completion(study_id="st-9"), deps) is None
    assert session_completed(completion(study_id="st-9", requested_by="other@example.org"), deps) is None


def test_a_repeated_completion_on_an_active_job_finds_it(deps: Deps) -> None:
    session_completed(completion(), deps)
    again = session_completed(completion(), deps)
    assert again is not None and not again.reopen and again.input.run == 0


def test_a_different_completion_reopens_an_ended_job(deps: Deps) -> None:
    session_completed(completion(), deps)
    end(deps, RECON_S1, run=1)
    opened = session_completed(completion(items=["late.dcm"]), deps)
    assert opened is not None and opened.reopen and opened.input.run == 2
    assert deps.jobs.get_marker(RECON_S1, COMPLETED_MARKER)["items"] == ["late.dcm"]  # type: ignore[index]


def test_a_first_completion_reopens_a_job_that_ended_by_its_idle_timeout(deps: Deps) -> None:
    blob_arrived("recon/s1/a.dcm", "0x1", deps)
    end(deps, RECON_S1)
    opened = session_completed(completion(), deps)
    assert opened is not None and opened.reopen and opened.input.run == 1


def test_a_completion_for_an_unknown_app_still_opens_a_job(deps: Deps) -> None:
    opened = session_completed(completion(app="unknown"), deps)
    job_id = session_job_id("unknown", "s1")
    assert opened is not None and opened.job_id == job_id
    assert deps.jobs.get_record(job_id) is not None  # its orchestration fails it, visibly


def test_a_completion_for_a_disabled_app_opens_nothing(deps: Deps) -> None:
    assert session_completed(completion(app="off"), deps) is None
    job_id = session_job_id("off", "s1")
    assert deps.jobs.get_record(job_id) is None
    assert deps.jobs.get_marker(job_id, COMPLETED_MARKER) is None


def test_a_prefix_with_a_leading_slash_is_refused() -> None:
    assert refused(message(prefix="/recon/s1/")).field == "prefix"
