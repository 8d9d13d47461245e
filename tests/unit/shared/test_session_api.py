"""What the job API and the session views show for sessions, on the in-memory job store: one
word per session and per study, the status document of a session job, and the job API's hooks
(`part_instances`, `retry`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared.config import Settings
from shared.deps import Deps
from shared.errors import ValidationError
from shared.jobstore import JobKind, JobView, MemoryJobStore, new_record
from shared.secrets.local import LocalSecretStore
from shared.session_api import combined, part_instances, present, retry, session_status, study_status, word
from shared.session_tasks import (
    COMPLETED_MARKER,
    SESSION_ORCHESTRATOR,
    SessionInput,
    part_name,
    session_job_id,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
    return Deps(
        settings=Settings.from_env(env),
        secrets=LocalSecretStore(tmp_path / "secrets"),
        jobs=MemoryJobStore(),
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))),
        smart=cast(Any, None),
    )


def record(
    app: str = "recon", session: str = "s1", state: str = "running", study: str | None = None, **extra: Any
) -> dict[str, Any]:
    labels = {"app": app, "session": session, **({"study": study} if study else {})}
    job_id = session_job_id(app, session)
    base = new_record(
        job_id, JobKind.SESSION, {"app": app, "session_id": session}, "auto-export@sessions.invalid", labels
    )
    return {**base, "state": state, **extra}


def part(path: str, state: str | None, **extra: Any) -> dict[str, Any]:
    progress: dict[str, Any] = {"item": path, **extra}
    if state is not None:
        progress["state"] = state
    return progress


def view(state: str = "running", *parts: dict[str, Any], **extra: Any) -> JobView:
    return JobView(record(state=state, **extra), {part_name(p["item"]): p for p in parts})


def store(deps: Deps, rec: dict[str, Any], *parts: dict[str, Any]) -> str:
    deps.jobs.put_record(rec)
    for p in parts:
        deps.jobs.put_part(rec["id"], part_name(p["item"]), p)
    return str(rec["id"])


# --- word ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "parts", "expected"),
    [
        ("succeeded", [part("a", "succeeded"), part("b", "skipped")], "complete"),
        ("succeeded", [], "complete"),
        ("failed", [part("a", "succeeded"), part("b", "failed")], "failed"),
        ("failed", [part("a", "retrying")], "failed"),  # the record's end beats its parts
        ("cancelled", [part("a", "transferring")], "cancelled"),
        ("running", [part("a", "succeeded"), part("b", "retrying"), part("c", "transferring")], "retrying"),
        ("retrying", [], "retrying"),
        ("queued", [part("a", "retrying")], "retrying"),
        ("running", [part("a", "succeeded"), part("b", "transferring"), part("c", "queued")], "in progress"),
        ("running", [part("a", "transferring")], "in progress"),
        ("queued", [], "queued"),
        ("queued", [part("a", "queued"), part("b", None)], "queued"),  # a part without a state is queued
        ("running", [part("a", "queued"), part("b", "queued")], "queued"),
        ("running", [part("a", "succeeded"), part("b", "skipped"), part("c", "failed")], "in progress"),
        ("running", [], "in progress"),
    ],
)
def test_one_word_for_each_state_of_a_session(state: str, parts: list[dict[str, Any]], expected: str) -> None:
    assert word(view(state, *parts)) == expected


def test_a_running_session_with_items_done_and_items_queued_is_in_progress() -> None:
    assert word(view("running", part("a", "succeeded"), part("b", "queued"))) == "in progress"


# --- combined ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (["complete", "failed", "retrying", "in progress", "queued", "cancelled"], "failed"),
        (["complete", "retrying", "in progress", "queued", "cancelled"], "retrying"),
        (["complete", "in progress", "queued", "cancelled"], "in progress"),
        (["complete", "queued", "cancelled"], "queued"),
        (["complete", "cancelled"], "cancelled"),
        (["complete", "complete"], "complete"),
        (["failed"], "failed"),
        ([], "queued"),
    ],
)
def test_the_whole_is_as_bad_as_its_worst_part(words: list[str], expected: str) -> None:
    assert combined(words) == expected
    assert combined(reversed(words)) == expected


def test_combined_reads_any_iterable() -> None:
    assert combined(w for w in ("complete", "retrying")) == "retrying"


# --- present -------------------------------------------------------------------------------------

LONG = "deep/" * 120 + "z.dcm"  # its part is named by a digest; the item keeps its path


def shown_view() -> JobView:
    parts = [
        part(
            "c.dcm", "failed", bytes_done=10, bytes_total=30, attempts=5, rule="dicom", last_error="HTTP 500"
        ),
        part(
            "a.dcm",
            "succeeded",
            bytes_done=100,
            bytes_total=100,
            attempts=1,
            rule="dicom",
            destination="exported/a.dcm",
        ),
        part(
            "scratch/b.tmp",
            "skipped",
            bytes_total=50,
            rule="no-scratch",
            last_error="excluded by rule no-scratch",
        ),
        part(
            LONG, "retrying", bytes_done=5, bytes_total=40, attempts=2, rule="default", last_error="timed out"
        ),
        part("d.dcm", None, bytes_total=7),
    ]
    rec = record(state="running", study="st-9", started="2024-05-01T12:00:00Z")
    return JobView(rec, {part_name(p["item"]): p for p in parts})


def test_present_has_the_status_header_of_every_kind() -> None:
    document = present(shown_view())
    assert document["id"] == session_job_id("recon", "s1") and document["kind"] == "session"
    assert document["requested_by"] == "auto-export@sessions.invalid"
    assert document["labels"] == {"app": "recon", "session": "s1", "study": "st-9"}
    assert document["request"] == {"app": "recon", "session_id": "s1"}
    assert document["started"] == "2024-05-01T12:00:00Z" and document["finished"] is None
    assert document["cancel_requested"] is False


def test_present_shows_a_running_session_with_a_retrying_item_as_retrying() -> None:
    document = present(shown_view())
    assert document["state"] == "retrying" and document["status"] == "retrying"
    quiet = present(view("running", part("a", "succeeded")))
    assert quiet["state"] == "running" and quiet["status"] == "in progress"


def test_present_names_the_session() -> None:
    assert present(shown_view())["session"] == {"app": "recon", "session_id": "s1", "study_id": "st-9"}
    assert present(view("queued"))["session"]["study_id"] is None


def test_present_counts_items_by_state() -> None:
    assert present(shown_view())["counts"] == {
        "items": 5,
        "failed": 1,
        "succeeded": 1,
        "skipped": 1,
        "retrying": 1,
        "queued": 1,
    }
    assert present(view("queued"))["counts"] == {"items": 0}


def test_present_counts_bytes_done_of_succeeded_items_out_of_those_not_skipped() -> None:
    assert present(shown_view())["bytes"] == {"done": 100, "total": 100 + 30 + 40 + 7}


def test_present_lists_items_sorted_by_path_with_their_rule_and_error() -> None:
    items = present(shown_view())["items"]
    assert [i["item"] for i in items] == ["a.dcm", "c.dcm", "d.dcm", LONG, "scratch/b.tmp"]
    by_path = {i["item"]: i for i in items}
    assert by_path["a.dcm"] == {
        "item": "a.dcm",
        "state": "succeeded",
        "bytes_done": 100,
        "bytes_total": 100,
        "attempts": 1,
        "rule": "dicom",
        "last_error": None,
        "destination": "exported/a.dcm",
    }
    assert (by_path["c.dcm"]["state"], by_path["c.dcm"]["last_error"]) == ("failed", "HTTP 500")
    assert (by_path["scratch/b.tmp"]["rule"], by_path["scratch/b.tmp"]["last_error"]) == (
        "no-scratch",
        "excluded by rule no-scratch",
    )
    assert by_path["d.dcm"]["state"] == "queued" and by_path["d.dcm"]["bytes_done"] == 0
    assert by_path["d.dcm"]["attempts"] == 0 and by_path["d.dcm"]["rule"] is None


def test_present_pages_the_items() -> None:
    document = present(shown_view(), offset=1, limit=2)
    assert [i["item"] for i in document["items"]] == ["c.dcm", "d.dcm"]
    assert document["items_offset"] == 1 and document["items_more"] is True
    last = present(shown_view(), offset=3, limit=2)
    assert [i["item"] for i in last["items"]] == [LONG, "scratch/b.tmp"] and last["items_more"] is False
    assert present(shown_view())["items_more"] is False


def test_present_shows_the_outcome_error_and_note() -> None:
    ended = view(
        "succeeded",
        part("a", "succeeded"),
        outcome={
            "state": "succeeded",
            "error": None,
            "note": "no session-completed message within 1440 minutes",
        },
    )
    document = present(ended)
    assert document["status"] == "complete" and document["last_error"] is None
    assert document["note"] == "no session-completed message within 1440 minutes"
    failed = present(view("failed", outcome={"state": "failed", "error": "1 item(s) failed; a: HTTP 500"}))
    assert failed["last_error"] == "1 item(s) failed; a: HTTP 500" and failed["note"] is None
    retrying = present(view("running", last_error="scan: storage unavailable"))
    assert retrying["last_error"] == "scan: storage unavailable"


# --- session_status and study_status -------------------------------------------------------------


@pytest.fixture
def sessions(deps: Deps) -> Deps:
    """Study st-9: session s1 exported by two apps, session s2 by one; s3 has no study."""
    store(
        deps,
        record("recon", "s1", "succeeded", study="st-9"),
        part("a.dcm", "succeeded", bytes_done=10, bytes_total=10),
    )
    deps.jobs.put_marker(
        session_job_id("recon", "s1"), COMPLETED_MARKER, {"session_id": "s1", "app": "recon"}
    )
    store(
        deps,
        record("report", "s1", "running", study="st-9"),
        part("r.pdf", "transferring", bytes_total=5),
        part("q.pdf", "queued"),
    )
    store(
        deps,
        record("recon", "s2", "running", study="st-9"),
        part("a.dcm", "retrying"),
        part("b.dcm", "succeeded"),
    )
    store(deps, record("recon", "s3", "queued"))
    # Another kind with the same labels is not a session.
    other = new_record("batch-1", JobKind.BATCH, {}, "x@example.org", {"session": "s1", "study": "st-9"})
    deps.jobs.put_record(other)
    return deps


def test_a_session_shows_every_app_exporting_it(sessions: Deps) -> None:
    status = session_status("s1", sessions)
    assert status is not None
    assert status["session_id"] == "s1" and status["study_id"] == "st-9"
    assert status["state"] == "in progress"
    apps = {a["app"]: a for a in status["apps"]}
    assert set(apps) == {"recon", "report"}
    recon, report = apps["recon"], apps["report"]
    assert recon["job_id"] == session_job_id("recon", "s1") and recon["status"] == "complete"
    assert recon["session_completed"] is True and report["session_completed"] is False
    assert recon["state"] == "succeeded" and recon["counts"] == {"items": 1, "succeeded": 1}
    assert recon["bytes"] == {"done": 10, "total": 10}
    assert [i["item"] for i in report["items"]] == ["q.pdf", "r.pdf"]
    assert report["status"] == "in progress"
    assert set(recon) == {"app", "job_id", "session_completed", "state", "status", "counts", "bytes",
                          "last_error", "note", "created", "updated", "finished", "items"}  # fmt: skip


def test_a_session_with_a_retrying_app_is_retrying(sessions: Deps) -> None:
    status = session_status("s2", sessions)
    assert status is not None and status["state"] == "retrying"
    assert [a["app"] for a in status["apps"]] == ["recon"]


def test_a_session_without_a_study_says_so(sessions: Deps) -> None:
    status = session_status("s3", sessions)
    assert status is not None and status["study_id"] is None and status["state"] == "queued"


def test_a_session_whose_apps_name_different_studies_lists_them(deps: Deps) -> None:
    store(deps, record("recon", "s1", study="st-2"))
    store(deps, record("report", "s1", study="st-1"))
    status = session_status("s1", deps)
    assert status is not None and status["study_id"] == ["st-1", "st-2"]


def test_an_unknown_session_has_no_status(sessions: Deps) -> None:
    assert session_status("nope", sessions) is None


def test_a_study_shows_each_of_its_sessions_with_one_word(sessions: Deps) -> None:
    status = study_status("st-9", sessions)
    assert status is not None
    assert status["study_id"] == "st-9" and status["state"] == "retrying"
    rows = status["sessions"]
    assert [r["session_id"] for r in rows] == ["s1", "s2"]
    s1, s2 = rows
    assert s1["state"] == "in progress" and s1["apps"] == ["recon", "report"]
    assert s1["counts"] == {"succeeded": 1, "transferring": 1, "queued": 1}
    assert s2["state"] == "retrying" and s2["apps"] == ["recon"]
    assert s2["counts"] == {"retrying": 1, "succeeded": 1}
    assert s1["updated"] and s2["updated"]


def test_a_study_with_a_failed_session_is_failed(sessions: Deps) -> None:
    store(sessions, record("recon", "s4", "failed", study="st-9"), part("x", "failed"))
    status = study_status("st-9", sessions)
    assert status is not None and status["state"] == "failed"
    assert [r["session_id"] for r in status["sessions"]] == ["s1", "s2", "s4"]


def test_an_unknown_study_has_no_status(sessions: Deps) -> None:
    assert study_status("st-unknown", sessions) is None


# --- part_instances ------------------------------------------------------------------------------


def test_only_items_under_way_get_the_cancel() -> None:
    under_way = view(
        "running",
        part("a", "transferring", instance="i-a"),
        part("b", "retrying", instance="i-b"),
        part("c", "queued", instance="i-c"),
        part("d", "succeeded", instance="i-d"),
        part("e", "failed", instance="i-e"),
        part("f", "transferring"),  # not started yet: no instance to reach
    )
    assert sorted(part_instances(under_way)) == ["i-a", "i-b"]
    assert part_instances(view("running")) == []


# --- retry ---------------------------------------------------------------------------------------


def failed_session(deps: Deps) -> str:
    return store(
        deps,
        record(
            "recon",
            "s1",
            "failed",
            run=1,
            finished="2024-05-01T12:00:00Z",
            last_error="1 item(s) failed",
            outcome={"state": "failed", "error": "1 item(s) failed"},
        ),
        part("a.dcm", "succeeded", etag="0x1", bytes_done=10),
        part("b.dcm", "failed", etag="0x2", last_error="HTTP 500", attempts=5),
        part("c.dcm", "cancelled", etag="0x3"),
        part("d.tmp", "skipped", etag="0x4", rule="no-scratch"),
    )


def test_retry_requeues_failed_and_cancelled_items_for_the_next_run(deps: Deps) -> None:
    job_id = failed_session(deps)
    submitted = retry(deps.jobs.view(job_id), None, deps)  # type: ignore[arg-type]
    assert submitted.orchestrator == SESSION_ORCHESTRATOR == "session_job"
    assert submitted.job == SessionInput(job_id=job_id, app="recon", session_id="s1", run=2, waits_turn=True)
    assert submitted.secret_names() == ()
    shown = deps.jobs.view(job_id)
    assert shown is not None
    rec = shown.record
    assert (rec["state"], rec["run"], rec["finished"], rec["outcome"], rec["last_error"]) == (
        "queued",
        2,
        None,
        None,
        None,
    )
    assert submitted.record["run"] == 2 and submitted.record["state"] == "queued"
    parts = {p["item"]: p for p in shown.parts.values()}
    for path in ("b.dcm", "c.dcm"):
        assert (
            parts[path]["state"] == "queued"
            and parts[path]["etag"] is None
            and parts[path]["last_error"] is None
        )
    assert parts["a.dcm"] == part("a.dcm", "succeeded", etag="0x1", bytes_done=10)
    assert parts["d.tmp"] == part("d.tmp", "skipped", etag="0x4", rule="no-scratch")


def test_retry_takes_an_empty_body(deps: Deps) -> None:
    job_id = failed_session(deps)
    assert retry(deps.jobs.view(job_id), {}, deps).job.run == 2  # type: ignore[arg-type]


@pytest.mark.parametrize("body", [{"destination": {"secret": "x"}}, [], "", 0, False, {"source": None}])
def test_retry_refuses_a_body(deps: Deps, body: Any) -> None:
    job_id = failed_session(deps)
    with pytest.raises(ValidationError) as caught:
        retry(deps.jobs.view(job_id), body, deps)  # type: ignore[arg-type]
    assert caught.value.field == "body"
    unchanged = deps.jobs.view(job_id)
    assert unchanged is not None and unchanged.record["state"] == "failed"
    assert {p["item"]: p["state"] for p in unchanged.parts.values()}["b.dcm"] == "failed"
