"""A session's pure decisions: what its orchestration does when nothing is under way
(`idle_step`), and the ids and part names it derives (`session_tasks`)."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

import pytest

from shared.session_plan import IdleStep, Step, idle_step
from shared.session_tasks import (
    GENERATION_BUDGET,
    IDLE_RESCAN_MINUTES,
    item_instance_id,
    part_name,
    session_job_id,
)

pytestmark = pytest.mark.unit

NOW = dt.datetime(2024, 5, 1, 12, 0, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(hours=24)
RESCAN = dt.timedelta(minutes=IDLE_RESCAN_MINUTES)
JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def stamp(when: dt.datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")  # how the orchestration writes last_activity


def step(**changes: Any) -> IdleStep:
    args: dict[str, Any] = {
        "completed": False,
        "open_items": 0,
        "more": False,
        "started": 0,
        "now": NOW,
        "last_activity": stamp(NOW - dt.timedelta(hours=1)),
        "idle_timeout": DAY,
    }
    return idle_step(**{**args, **changes})


# --- idle_step -----------------------------------------------------------------------------------


def test_items_queued_beyond_the_limit_continue_as_new() -> None:
    assert step(more=True) == IdleStep(Step.CONTINUE)
    assert step(more=True, completed=True).kind is Step.CONTINUE  # even once the session completed


def test_a_used_up_generation_budget_continues_as_new() -> None:
    assert step(started=GENERATION_BUDGET) == IdleStep(Step.CONTINUE)
    assert step(started=GENERATION_BUDGET + 5).kind is Step.CONTINUE
    assert step(started=GENERATION_BUDGET, completed=True).kind is Step.CONTINUE
    assert step(started=GENERATION_BUDGET - 1).kind is Step.WAIT


def test_a_completed_session_with_nothing_open_finishes() -> None:
    assert step(completed=True, open_items=0) == IdleStep(Step.FINISH)


def test_a_completed_session_with_open_items_continues_for_them() -> None:
    assert step(completed=True, open_items=3) == IdleStep(Step.CONTINUE)


def test_a_completed_session_finishes_without_a_note_even_when_idle_for_long() -> None:
    old = stamp(NOW - 10 * DAY)
    assert step(completed=True, last_activity=old) == IdleStep(Step.FINISH)


def test_the_idle_timeout_finishes_a_session_that_never_completed() -> None:
    finished = step(last_activity=stamp(NOW - DAY), idle_timeout=DAY)
    assert finished.kind is Step.FINISH and finished.wait_s == 0
    assert finished.note is not None and "1440 minutes" in finished.note
    later = step(last_activity=stamp(NOW - 3 * DAY), idle_timeout=dt.timedelta(minutes=90))
    assert later.kind is Step.FINISH and later.note is not None and "90 minutes" in later.note


def test_a_session_idle_for_less_than_its_timeout_waits_for_the_rescan() -> None:
    waiting = step(last_activity=stamp(NOW - dt.timedelta(hours=1)), idle_timeout=DAY)
    assert waiting == IdleStep(Step.WAIT, wait_s=RESCAN.total_seconds())


def test_a_session_close_to_its_timeout_waits_only_for_the_time_left() -> None:
    waiting = step(last_activity=stamp(NOW - DAY + dt.timedelta(minutes=5)), idle_timeout=DAY)
    assert waiting == IdleStep(Step.WAIT, wait_s=300.0)


def test_the_rescan_interval_can_be_given() -> None:
    waiting = step(rescan=dt.timedelta(seconds=42))
    assert waiting == IdleStep(Step.WAIT, wait_s=42.0)


def test_without_a_last_activity_the_timeout_counts_from_now() -> None:
    assert step(last_activity=None, idle_timeout=dt.timedelta(minutes=10)) == IdleStep(
        Step.WAIT, wait_s=600.0
    )
    assert step(last_activity=None, idle_timeout=DAY) == IdleStep(Step.WAIT, wait_s=RESCAN.total_seconds())


def test_a_naive_orchestration_clock_is_read_as_utc() -> None:
    naive = NOW.replace(tzinfo=None)
    waiting = step(now=naive, last_activity=stamp(NOW - DAY + dt.timedelta(minutes=1)))
    assert waiting == IdleStep(Step.WAIT, wait_s=60.0)


def test_a_last_activity_with_an_offset_is_read() -> None:
    offset = (NOW - DAY + dt.timedelta(minutes=2)).astimezone(dt.timezone(dt.timedelta(hours=2))).isoformat()
    assert step(last_activity=offset) == IdleStep(Step.WAIT, wait_s=120.0)


# --- session_job_id ------------------------------------------------------------------------------


def test_a_session_job_id_is_deterministic() -> None:
    assert session_job_id("recon", "s-1") == session_job_id("recon", "s-1")
    assert session_job_id("recon", "s-1") != session_job_id("report", "s-1")
    assert session_job_id("recon", "s-1") != session_job_id("recon", "s-2")


def test_a_session_job_id_is_readable() -> None:
    job_id = session_job_id("recon", "s-1")
    assert job_id.startswith("ses-recon-s-1-")


def test_pairs_that_read_the_same_get_different_ids() -> None:
    assert session_job_id("a-b", "c") != session_job_id("a", "b-c")
    assert session_job_id("a.b", "c") != session_job_id("a", "b.c")  # '.' reads as '-' too


@pytest.mark.parametrize(
    ("app", "session"),
    [
        ("recon", "s1"),
        ("ct.recon_v2", "2024-05-01.session.7"),
        ("x" * 63, "y" * 128),
        ("app", "ünïcødé sessión/with spaces?#"),
        ("...", "..."),
        ("-", "-"),
        ("", ""),
    ],
)
def test_a_session_job_id_is_a_valid_job_id_even_for_long_or_odd_ids(app: str, session: str) -> None:
    job_id = session_job_id(app, session)
    assert JOB_ID.match(job_id), job_id


# --- part_name -----------------------------------------------------------------------------------


def test_a_part_is_named_by_its_path() -> None:
    assert part_name("series-1/a.dcm") == "series-1/a.dcm"
    assert part_name("x" * 500) == "x" * 500


def test_a_very_long_path_gets_a_digest_for_its_part_name() -> None:
    long = "deep/" * 200 + "a.dcm"
    name = part_name(long)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", name)
    assert part_name(long) == name
    assert part_name(long + "x") != name


def _row_key(part: str) -> str:
    # How the Azure job store turns a part name into a table RowKey (shared.jobstore.azure).
    return base64.urlsafe_b64encode(part.encode()).decode().rstrip("=")


def test_an_ascii_part_name_fits_a_table_row_key() -> None:
    for path in ("x" * 500, "x" * 501, "x" * 5000):
        assert len(_row_key(part_name(path))) <= 1024


@pytest.mark.parametrize("path", ["é" * 500, "📷" * 300, "图像/" * 160])
def test_a_non_ascii_part_name_fits_a_table_row_key(path: str) -> None:
    assert len(_row_key(part_name(path))) <= 1024


# --- item_instance_id ----------------------------------------------------------------------------


def test_an_item_instance_id_is_deterministic() -> None:
    assert item_instance_id("job-1", "a.dcm", "0x1", 0) == item_instance_id("job-1", "a.dcm", "0x1", 0)


def test_an_item_instance_id_changes_with_the_etag_the_run_the_path_and_the_job() -> None:
    first = item_instance_id("job-1", "a.dcm", "0x1", 0)
    assert item_instance_id("job-1", "a.dcm", "0x2", 0) != first
    assert item_instance_id("job-1", "a.dcm", "0x1", 1) != first
    assert item_instance_id("job-1", "b.dcm", "0x1", 0) != first
    assert item_instance_id("job-2", "a.dcm", "0x1", 0) != first


def test_an_item_instance_id_names_its_job_and_run() -> None:
    instance = item_instance_id("job-1", "x" * 2000, "0x1", 3)
    assert instance.startswith("job-1:item:") and instance.endswith(":r3")
    assert len(instance) < 100  # a digest, not the path
