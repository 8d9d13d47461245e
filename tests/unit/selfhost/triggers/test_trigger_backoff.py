"""Randomized exponential backoff: the SDK's sequence, monotone whatever the jitter, capped."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from selfhost.triggers.backoff import Backoff, backoff_delay

pytestmark = pytest.mark.unit


def test_sequence_without_jitter_matches_the_documented_one() -> None:
    delays = [backoff_delay(k, 0.1, 60.0) for k in range(6)]
    assert delays == pytest.approx([0.1, 0.2, 0.3, 0.5, 0.9, 1.7])


def test_capped_at_maximum() -> None:
    assert backoff_delay(10, 0.1, 2.0) == 2.0
    assert backoff_delay(10_000, 0.1, 2.0) == 2.0  # no overflow for long idle periods


FACTORS = st.lists(st.floats(0.8, 1.2), min_size=1, max_size=80)


@given(FACTORS, st.floats(0.1, 120.0))
def test_backoff_is_monotone_and_capped(factors: list[float], maximum: float) -> None:
    draws = iter(factors)
    backoff = Backoff(0.1, maximum, draw=lambda: next(draws))
    delays = [backoff.next_delay() for _ in factors]
    assert delays[0] == pytest.approx(0.1)
    assert all(b >= a for a, b in itertools.pairwise(delays))
    assert all(d <= maximum for d in delays)


def test_reaches_maximum_and_stays_there_then_resets() -> None:
    backoff = Backoff(0.1, 1.0, draw=lambda: 1.2)
    delays = [backoff.next_delay() for _ in range(10)]
    assert delays[-3:] == [1.0, 1.0, 1.0]
    backoff.reset()
    assert backoff.next_delay() == pytest.approx(0.1)


def test_rejects_nonsense_bounds() -> None:
    with pytest.raises(ValueError):
        Backoff(0.0, 1.0)
    with pytest.raises(ValueError):
        Backoff(2.0, 1.0)
