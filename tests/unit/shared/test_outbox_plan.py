"""`next_attempt`, the outbox's pure retry plan: never before now, monotone, None once spent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.outbox import next_attempt

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)

intervals = st.floats(min_value=0, max_value=7 * 86_400, allow_nan=False)
schedules = st.lists(intervals, max_size=8)
attempts = st.integers(min_value=-2, max_value=12)
shifts = st.integers(min_value=0, max_value=10**6)


@given(schedules, attempts)
def test_never_before_now_and_none_only_after_the_schedule(schedule: list[float], tries: int) -> None:
    after = next_attempt(tries, schedule, NOW)
    if tries > len(schedule):
        assert after is None
    else:
        assert after is not None and after >= NOW
        assert after == NOW if tries <= 0 else after == NOW + timedelta(seconds=schedule[tries - 1])


@given(schedules, attempts, attempts)
def test_monotone_in_attempts_for_a_growing_schedule(schedule: list[float], a: int, b: int) -> None:
    schedule = sorted(schedule)
    low, high = sorted((a, b))
    later = next_attempt(high, schedule, NOW)
    if later is not None:  # once None, None for every further attempt
        earlier = next_attempt(low, schedule, NOW)
        assert earlier is not None and earlier <= later
    else:
        assert next_attempt(high + 1, schedule, NOW) is None


@given(schedules, attempts, shifts, shifts)
def test_monotone_in_now(schedule: list[float], tries: int, s: int, t: int) -> None:
    low, high = sorted((s, t))
    first = next_attempt(tries, schedule, NOW + timedelta(seconds=low))
    second = next_attempt(tries, schedule, NOW + timedelta(seconds=high))
    assert (first is None) == (second is None)
    assert first is None or second is None or first <= second


def test_seed_001_one_interval_then_dead() -> None:
    assert next_attempt(0, [300], NOW) == NOW
    assert next_attempt(1, [300], NOW) == NOW + timedelta(minutes=5)
    assert next_attempt(2, [300], NOW) is None
    assert next_attempt(1, [], NOW) is None


@pytest.mark.parametrize("bad", [[-1.0], [60.0, float("inf")], [float("nan")]])
def test_bad_intervals_are_refused(bad: list[float]) -> None:
    with pytest.raises(ValueError, match="retry intervals"):
        next_attempt(1, bad, NOW)
