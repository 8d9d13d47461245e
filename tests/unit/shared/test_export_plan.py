"""The export orchestrators' pure decisions: commit cadence, rollover, resume, final state."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import export_plan as plan
from shared.contracts import ExportOptions, PageResult, TypeCheckpoint
from shared.destinations.base import block_id

pytestmark = pytest.mark.unit


def page(cp: TypeCheckpoint, resources: int, size: int, last: bool = False) -> PageResult:
    n = cp.pages_done + 1
    seq = cp.files[-1].sequence if cp.files else 1
    return PageResult(type=cp.type, page=n, file_name=f"{cp.type}-{seq}.ndjson", block_id=block_id(cp.type, seq, n),
                      size_bytes=size, resources=resources, next_cursor=None if last else f"cursor-{n}")  # fmt: skip


def test_commit_every_n_pages() -> None:
    opts = ExportOptions(commit_every_pages=3)
    cp = plan.start(TypeCheckpoint(type="Patient"))
    decisions = []
    since = 0
    for _ in range(6):
        cp, d = plan.after_page(cp, page(cp, 10, 1000), opts, since)
        decisions.append(d.commit)
        since = 0 if d.commit else since + 1
        if d.commit:
            cp = plan.committed(cp, d)
    assert decisions == [False, False, True, False, False, True]
    assert cp.files[-1].committed_resources == 60 and not cp.files[-1].pending


def test_rollover_commits_and_starts_next_file() -> None:
    opts = ExportOptions(max_file_bytes=2048, commit_every_pages=100)
    cp = plan.start(TypeCheckpoint(type="Obs"))
    cp, d = plan.after_page(cp, page(cp, 1, 1500), opts, 0)
    assert not d.commit
    cp, d = plan.after_page(cp, page(cp, 1, 1500), opts, 1)
    assert d.commit and d.rollover and not d.done
    cp = plan.committed(cp, d)
    assert [f.name for f in cp.files] == ["Obs-1.ndjson", "Obs-2.ndjson"]
    assert cp.files[1].blocks == ()


def test_last_page_commits_and_marks_done() -> None:
    opts = ExportOptions()
    cp = plan.start(TypeCheckpoint(type="Enc"))
    cp, d = plan.after_page(cp, page(cp, 5, 500, last=True), opts, 0)
    assert d.commit and d.done and not d.rollover
    assert plan.committed(cp, d).done


def test_empty_last_page_needs_no_commit() -> None:
    cp = plan.start(TypeCheckpoint(type="Enc"))
    cp, d = plan.after_page(cp, page(cp, 0, 0, last=True), ExportOptions(), 0)
    assert d.done and not d.commit and cp.files[-1].blocks == ()


def test_committed_resets_consecutive_failures() -> None:
    cp = plan.start(TypeCheckpoint(type="P", consecutive_failures=2))
    cp, d = plan.after_page(cp, page(cp, 1, 10, last=True), ExportOptions(), 0)
    assert plan.committed(cp, d).consecutive_failures == 0


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(min_value=0, max_value=5000), min_size=1, max_size=60),
    max_file=st.integers(min_value=1024, max_value=20000),
    every=st.integers(min_value=1, max_value=7),
    crash_at=st.integers(min_value=0, max_value=60),
)
def test_resume_from_last_commit_loses_and_duplicates_nothing(sizes: list[int], max_file: int, every: int,
                                                             crash_at: int) -> None:  # fmt: skip
    """Run pages, 'crash' once (drop everything since the last commit) and resume from the
    committed checkpoint: the committed files hold every page exactly once, in order."""
    opts = ExportOptions(max_file_bytes=max_file, commit_every_pages=every)
    last = plan.start(TypeCheckpoint(type="T"))
    cp, since, crashed = last, 0, False
    i = 0
    while True:
        if i == crash_at and not crashed:
            crashed, cp, since = True, last, 0  # resume from the last commit
            i = cp.pages_done
        resources = 1 if sizes[i] else 0
        cp, d = plan.after_page(cp, page(cp, resources, sizes[i], last=i == len(sizes) - 1), opts, since)
        since += 1
        i += 1
        if d.commit:
            cp = last = plan.committed(cp, d)
            since = 0
        if d.done:
            break
    pages = [int(b.rsplit("-", 1)[1]) for f in cp.files for b in f.blocks]
    expected = [n for n, size in enumerate(sizes, start=1) if size]
    assert pages == expected
    assert all(not f.pending for f in cp.files)
    assert sum(f.committed_resources for f in cp.files) == len(expected)


def test_job_state_folds_type_outcomes() -> None:
    ok = {"type": "A", "state": "succeeded", "error": None}
    bad = {"type": "B", "state": "failed", "error": "403"}
    stop = {"type": "C", "state": "cancelled", "error": None}
    assert plan.job_state([ok, ok], False) == "succeeded"
    assert plan.job_state([ok, bad, stop], True) == "failed"
    assert plan.job_state([ok, stop], False) == "cancelled"
    assert plan.job_state([ok], True) == "cancelled"
    assert plan.job_error([ok, bad]) == "B: 403"


def test_waits_are_capped() -> None:
    assert plan.retry_after_wait_s(10_000) == plan.MAX_WAIT_S
    assert plan.failure_wait_s(30, 5000) == plan.MAX_WAIT_S
    assert plan.failure_wait_s(1, 5000) == 5.0


# --- several searches per type (ORed filters x patient chunks) -----------------------------------


def searched(
    cp: TypeCheckpoint, resources: int, next_cursor: str | None, next_query: int | None
) -> PageResult:
    n = cp.pages_done + 1
    return PageResult(type=cp.type, page=n, file_name=f"{cp.type}-1.ndjson", block_id=block_id(cp.type, 1, n),
                      size_bytes=resources * 10, resources=resources, next_cursor=next_cursor,
                      next_query=next_query)  # fmt: skip


def test_the_next_search_starts_at_its_first_page() -> None:
    opts = ExportOptions(commit_every_pages=100)
    cp = plan.start(TypeCheckpoint(type="Patient"))
    cp, d = plan.after_page(cp, searched(cp, 2, "next-0", None), opts, 0)
    assert (cp.query, cp.cursor, d.done) == (0, "next-0", False)
    cp, d = plan.after_page(cp, searched(cp, 1, None, 1), opts, 1)
    assert (cp.query, cp.cursor, d.done, d.commit) == (1, None, False, False)
    cp, d = plan.after_page(cp, searched(cp, 1, None, None), opts, 2)
    assert d.done and d.commit and cp.query == 1


def test_pages_with_nothing_to_commit_still_checkpoint_every_n_pages() -> None:
    opts = ExportOptions(commit_every_pages=3)
    cp = plan.start(TypeCheckpoint(type="Observation"))
    decisions = []
    for q in range(5):  # five empty patient chunks
        cp, d = plan.after_page(cp, searched(cp, 0, None, q + 1), opts, q % 3)
        decisions.append(d.checkpoint)
    assert decisions == [False, False, True, False, False]
    assert cp.query == 5 and not d.commit


def test_old_checkpoints_and_results_read_as_the_first_search() -> None:
    old = TypeCheckpoint(type="Patient", cursor="c", pages_done=2).to_dict()
    del old["query"]
    assert TypeCheckpoint.from_dict(old).query == 0
    result = searched(plan.start(TypeCheckpoint(type="Patient")), 1, None, None).to_dict()
    del result["next_query"]
    assert PageResult.from_dict(result).last_page
