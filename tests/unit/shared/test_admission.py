"""The caps on running jobs (pure): who may start now, in line order, and why the others wait."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.admission import MAX_WAIT_S, MIN_WAIT_S, Admission, Decision, Limits, decide, wait_s
from shared.jobstore import OpenJob

pytestmark = pytest.mark.unit


def job(n: int, user: str = "a@example.com", kind: str = "batch", state: str = "queued", *,
        admitted: bool = False) -> OpenJob:  # fmt: skip
    """Job `n` of the line: a higher `n` was submitted later (same second, a later microsecond)."""
    return OpenJob(job_id=f"j{n:02d}", kind=kind, requested_by=user, state=state,
                   submitted=f"2026-12-01T10:00:00.{n:06d}Z", admitted=admitted)  # fmt: skip


def admitted(jobs: list[OpenJob], limits: Limits) -> list[str]:
    return [j.job_id for j in jobs if not j.started and decide(j, jobs, limits).admitted]


def test_no_caps_admit_everyone() -> None:
    jobs = [job(n) for n in range(10)]
    assert admitted(jobs, Limits()) == [j.job_id for j in jobs]
    assert admitted(jobs, Limits(per_user=0, per_kind={"batch": 0})) == [j.job_id for j in jobs]


def test_a_user_cap_lets_the_earliest_start_in_submission_order() -> None:
    jobs = [job(3), job(1), job(2)]  # the order they are listed in does not matter
    assert admitted(jobs, Limits(per_user=1)) == ["j01"]
    assert admitted(jobs, Limits(per_user=2)) == ["j01", "j02"]


def test_started_jobs_hold_their_places_and_the_reason_counts_the_jobs_ahead() -> None:
    jobs = [job(1, state="running"), job(2), job(3)]
    limits = Limits(per_user=1)
    assert decide(jobs[1], jobs, limits) == Decision(
        admitted=False, reason="waiting for 1 earlier job of a@example.com (MAX_RUNNING_JOBS_PER_USER=1)"
    )
    third = decide(jobs[2], jobs, limits)
    assert third.reason == "waiting for 2 earlier jobs of a@example.com (MAX_RUNNING_JOBS_PER_USER=1)"


def test_an_admitted_job_still_preparing_holds_its_place() -> None:
    jobs = [job(1, admitted=True), job(2)]
    assert not decide(jobs[1], jobs, Limits(per_user=1)).admitted
    assert decide(jobs[0], jobs, Limits(per_user=1)).admitted  # asked again: still admitted


def test_a_later_job_that_started_anyway_counts_too() -> None:
    # A cap lowered under running jobs: they run on, and nobody else starts until they end.
    jobs = [job(1), job(2, state="retrying"), job(3, state="running")]
    assert not decide(jobs[0], jobs, Limits(per_user=2)).admitted
    assert decide(jobs[0], jobs, Limits(per_user=3)).admitted


def test_users_are_capped_apart_and_without_case() -> None:
    jobs = [job(1, "A@example.com", state="running"), job(2, "a@EXAMPLE.com"), job(3, "b@example.com")]
    assert admitted(jobs, Limits(per_user=1)) == ["j03"]


def test_a_kind_cap_counts_every_user_and_only_that_kind() -> None:
    jobs = [job(1, "a@x.org", state="running"), job(2, "b@x.org"), job(3, "c@x.org", kind="fhir-export")]
    limits = Limits(per_kind={"batch": 1})
    assert admitted(jobs, limits) == ["j03"]
    assert (
        decide(jobs[1], jobs, limits).reason
        == "waiting for 1 earlier batch job (MAX_RUNNING_JOBS_PER_KIND batch=1)"
    )


def test_one_users_long_queue_does_not_hold_back_another_user_of_the_kind() -> None:
    mine = [job(n, "busy@x.org", state="running" if n < 2 else "queued") for n in range(20)]
    other = job(30, "other@x.org")
    limits = Limits(per_user=2, per_kind={"batch": 4})
    assert decide(other, [*mine, other], limits).admitted  # busy's 18 queued jobs take no batch place
    assert not decide(mine[2], [*mine, other], limits).admitted


def test_both_caps_full_say_both_reasons() -> None:
    jobs = [job(1, state="running"), job(2)]
    reason = decide(jobs[1], jobs, Limits(per_user=1, per_kind={"batch": 1})).reason
    assert reason == ("waiting for 1 earlier job of a@example.com (MAX_RUNNING_JOBS_PER_USER=1); "
                      "waiting for 1 earlier batch job (MAX_RUNNING_JOBS_PER_KIND batch=1)")  # fmt: skip


def test_uncapped_users_count_per_kind_only() -> None:
    auto = "auto-export@sessions.invalid"
    jobs = [job(n, auto, kind="session", state="running" if n < 3 else "queued") for n in range(5)]
    assert admitted(jobs, Limits(per_user=1, uncapped_users=frozenset({auto}))) == ["j03", "j04"]
    assert admitted(jobs, Limits(per_user=1, per_kind={"session": 4}, uncapped_users=frozenset({auto}))) == [
        "j03"
    ]


def test_ties_in_the_submitted_instant_go_by_id() -> None:
    first, second = job(1), replace(job(1), job_id="j00")
    assert admitted([first, second], Limits(per_user=1)) == ["j00"]


def test_the_job_asking_may_be_missing_from_the_listing() -> None:
    # The open-job row is written after the record: a job may ask before its row is there.
    others = [job(1, state="running")]
    assert not decide(job(2), others, Limits(per_user=1)).admitted
    assert decide(job(2), others, Limits(per_user=2)).admitted


def test_the_back_off_grows_with_the_wait_between_its_bounds() -> None:
    waits = [wait_s(s) for s in (0, 4, 8, 20, 60, 120, 600, 86_400)]
    assert waits[0] == MIN_WAIT_S and waits[-1] == MAX_WAIT_S
    assert waits == sorted(waits)


def test_the_answer_round_trips_as_json() -> None:
    answer = Admission(reason="waiting for 1 earlier job", wait_s=2)
    assert Admission.from_dict(answer.to_dict()) == answer
    assert Admission.from_dict({"wait_s": 3}).wait_s == 3.0


users = st.sampled_from(["a@x.org", "b@x.org", "c@x.org"])
kinds = st.sampled_from(["batch", "fhir-export", "session"])
states = st.sampled_from(["queued", "queued", "queued", "running", "retrying"])
lines = st.lists(st.tuples(users, kinds, states, st.booleans()), max_size=25)
caps = st.integers(min_value=0, max_value=4)


@settings(max_examples=300, deadline=None)
@given(lines, caps, caps, caps)
def test_starting_the_admitted_keeps_every_cap_and_the_line_order(
    line: list[tuple[str, str, str, bool]], per_user: int, batch: int, export: int
) -> None:
    jobs = [job(n, user, kind, state, admitted=flag and state == "queued")
            for n, (user, kind, state, flag) in enumerate(line)]  # fmt: skip
    limits = Limits(per_user=per_user, per_kind={"batch": batch, "fhir-export": export})
    chosen = {j.job_id for j in jobs if not j.started and decide(j, jobs, limits).admitted}
    running = [j for j in jobs if j.started or j.job_id in chosen]
    started_before = [j for j in jobs if j.started]
    for cap, key, pick in ((per_user, "user", lambda j: j.requested_by), (batch, "batch", lambda j: j.kind),
                           (export, "fhir-export", lambda j: j.kind)):  # fmt: skip
        if not cap:
            continue
        now = Counter(pick(j) for j in running if key == "user" or j.kind == key)
        before = Counter(pick(j) for j in started_before if key == "user" or j.kind == key)
        for group, count in now.items():
            assert count <= max(cap, before[group]), (key, group, count)  # nobody new above a cap
    for j in jobs:  # in line: a job admitted means every earlier queued job of its user and kind is too
        if j.job_id in chosen:
            earlier = [e for e in jobs if not e.started and e.order < j.order]
            same = [e for e in earlier if e.requested_by == j.requested_by and e.kind == j.kind]
            assert all(e.job_id in chosen for e in same), (j, same)
