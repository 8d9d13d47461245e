"""The per-caller token bucket: bursts up to the rate, then a wait that says when to come back."""

from __future__ import annotations

import pytest

from shared.rate_limit import RateLimiter

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_up_to_the_rate_passes_then_the_next_waits() -> None:
    clock = Clock()
    limiter = RateLimiter(60, clock)
    assert all(limiter.admit("a") is None for _ in range(60))
    wait = limiter.admit("a")
    assert wait is not None and 0.9 < wait <= 1.0
    assert limiter.retry_after_header(wait) == "1"
    assert limiter.admit("b") is None  # another caller has its own bucket
    clock.now += 1.0
    assert limiter.admit("a") is None
    assert limiter.admit("a") is not None


def test_zero_means_no_limit() -> None:
    limiter = RateLimiter(0)
    assert all(limiter.admit("a") is None for _ in range(10_000))


def test_the_table_of_callers_stays_bounded() -> None:
    clock = Clock()
    limiter = RateLimiter(5, clock)
    for i in range(25_000):
        limiter.admit(f"caller-{i}")
    assert len(limiter._buckets) <= 10_000
