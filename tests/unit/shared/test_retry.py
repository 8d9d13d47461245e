"""Retry policies, backoff (monotone and capped) and Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared import retry
from shared.retry import RetryPolicy, compute_backoff, parse_retry_after

pytestmark = pytest.mark.unit

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

attempts = st.integers(min_value=0, max_value=10_000)
bases = st.floats(min_value=0, max_value=3600, allow_nan=False)
caps = st.floats(min_value=0, max_value=86_400, allow_nan=False)


@given(attempts, attempts, bases, caps)
def test_backoff_is_monotone(a: int, b: int, base: float, cap: float) -> None:
    low, high = sorted((a, b))
    assert compute_backoff(low, base, cap) <= compute_backoff(high, base, cap)


@given(attempts, bases, caps)
def test_backoff_is_capped_and_never_negative(attempt: int, base: float, cap: float) -> None:
    delay = compute_backoff(attempt, base, cap)
    assert 0 <= delay <= cap


def test_backoff_doubles_from_the_base_until_the_cap() -> None:
    assert [compute_backoff(n, 1.0, 10.0) for n in range(7)] == [0.0, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert compute_backoff(10**9, 0.5, 30.0) == 30.0  # huge attempt numbers do not overflow


@pytest.mark.parametrize(
    ("attempt", "base", "cap"), [(-1, 1, 1), (1, -1, 1), (1, 1, -1), (1, float("nan"), 1)]
)
def test_backoff_rejects_nonsense(attempt: int, base: float, cap: float) -> None:
    with pytest.raises(ValueError):
        compute_backoff(attempt, base, cap)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("120", 120.0),
        (" 0 ", 0.0),
        ("1.5", 1.5),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),  # IMF-fixdate
        ("Wednesday, 01-May-24 12:01:00 GMT", 60.0),  # obsolete RFC 850
        ("Wed May  1 12:00:10 2024", 10.0),  # obsolete asctime (no zone: GMT)
        ("Wed, 01 May 2024 11:00:00 GMT", 0.0),  # in the past: go now
        (None, None),
        ("", None),
        ("soon", None),
        ("-5", None),
        ("inf", None),
        ("Wed, 99 May 2024 12:00:30 GMT", None),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_parse_retry_after_uses_the_given_clock() -> None:
    later = NOW + timedelta(seconds=20)
    assert parse_retry_after("Wed, 01 May 2024 12:00:30 GMT", later) == 10.0
    with pytest.raises(ValueError):
        parse_retry_after("5", datetime(2024, 5, 1))  # naive clocks are a bug


def test_named_policies_are_valid_and_map_to_durable_retry_options() -> None:
    for policy in (
        retry.DEFAULT,
        retry.SOURCE_PAGE,
        retry.DESTINATION_WRITE,
        retry.SECRET_STORE,
        retry.NOTIFICATION,
    ):
        assert policy.first_retry_interval_ms >= 1 and policy.max_attempts >= 1
    assert RetryPolicy(5000, 5) == retry.DEFAULT
    assert retry.DESTINATION_WRITE.as_retry_options_kwargs() == {
        "first_retry_interval_in_milliseconds": 5000,
        "max_number_of_attempts": 4,
    }
    with pytest.raises(ValueError):
        RetryPolicy(first_retry_interval_ms=0, max_attempts=1)
    with pytest.raises(ValueError):
        RetryPolicy(first_retry_interval_ms=1, max_attempts=0)
