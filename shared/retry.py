"""Retries as a separate concern: named policies, a pure backoff function, `Retry-After` parsing.

Durable Functions 1.x (Python) `RetryOptions` has only a first interval and a maximum number of
attempts (no backoff coefficient, no error filter), so a `RetryPolicy` carries exactly those two
numbers; `as_retry_options_kwargs()` spells them the way `df.RetryOptions` wants them. This
module never imports the durable SDK. `compute_backoff` is for code that waits by itself (the
self-hosted runtime, a polling loop); `parse_retry_after` turns a server's hint into seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

__all__ = [
    "DEFAULT",
    "DESTINATION_WRITE",
    "NOTIFICATION",
    "SECRET_STORE",
    "SOURCE_PAGE",
    "RetryPolicy",
    "compute_backoff",
    "parse_retry_after",
]


@dataclass(frozen=True)
class RetryPolicy:
    """How often an activity is attempted in total, and how long to wait before each retry."""

    first_retry_interval_ms: int
    max_attempts: int

    def __post_init__(self) -> None:
        if self.first_retry_interval_ms < 1:
            raise ValueError("first_retry_interval_ms must be at least 1")
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1 (1 means no retry)")

    def as_retry_options_kwargs(self) -> dict[str, int]:
        """Keyword arguments for `azure.durable_functions.RetryOptions(**kwargs)`."""
        return {
            "first_retry_interval_in_milliseconds": self.first_retry_interval_ms,
            "max_number_of_attempts": self.max_attempts,
        }


# The default of the export request's `options.retry`: 5 attempts 5 s apart ride out a FHIR server
# or storage account restart or a throttling burst (about 20 s) without hiding a real outage.
DEFAULT = RetryPolicy(first_retry_interval_ms=5_000, max_attempts=5)

# Reading one page: FHIR servers throttle with 429 and come back within seconds; 5 attempts at
# 5 s mirror microsoft/fhir-server's destination defaults and keep one page's worst case near 20 s.
SOURCE_PAGE = RetryPolicy(first_retry_interval_ms=5_000, max_attempts=5)

# Stage/commit to blob storage: microsoft/fhir-server retries destination errors 3 times at 5 s.
# The storage SDK already retries each request internally, so more attempts here only add delay.
DESTINATION_WRITE = RetryPolicy(first_retry_interval_ms=5_000, max_attempts=4)

# Key Vault is highly available and its SDK retries internally; a failure that survives 3 tries
# 2 s apart is a configuration or permission problem the failure threshold should see quickly.
SECRET_STORE = RetryPolicy(first_retry_interval_ms=2_000, max_attempts=3)

# E-mail must survive a mail server that is down for a while (use case: retry while the SMTP
# server is down): 10 attempts a minute apart cover a ~10 minute restart or maintenance window.
NOTIFICATION = RetryPolicy(first_retry_interval_ms=60_000, max_attempts=10)

# 2**63 seconds is far beyond any cap; stopping the exponent here keeps the float finite.
_MAX_EXPONENT = 63


def compute_backoff(attempt: int, base_s: float, cap_s: float) -> float:
    """Seconds to wait before retry number `attempt`: `base_s * 2**(attempt-1)`, at most `cap_s`.

    Attempt 0 (the first try) waits 0. Pure and deterministic, so the result is monotone
    non-decreasing in `attempt` and never above `cap_s`; callers that want jitter add it on top.
    """
    if attempt < 0:
        raise ValueError("attempt must be >= 0")
    if base_s < 0 or cap_s < 0 or math.isnan(base_s) or math.isnan(cap_s):
        raise ValueError("base_s and cap_s must be non-negative numbers")
    if attempt == 0:
        return 0.0
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return float(min(cap_s, base_s * (2.0**exponent)))


def parse_retry_after(value: str | None, now: datetime) -> float | None:
    """The wait a `Retry-After` header asks for, in seconds, or None when absent or unreadable.

    RFC 9110 §10.2.3 allows delay-seconds (`120`) or an HTTP-date (`Wed, 21 Oct 2015 07:28:00 GMT`;
    the obsolete RFC 850 and asctime forms too). A date in the past means "now" (0). `now` must be
    timezone-aware: it comes from the injected clock, never from `datetime.now()` in here.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    if text.isdigit():
        return float(int(text))
    try:
        # Lenient extension: some servers send fractional seconds ("1.5"); never negative.
        seconds = float(text)
    except ValueError:
        return _seconds_until_http_date(text, now)
    if math.isfinite(seconds) and seconds >= 0:
        return seconds
    return None


def _seconds_until_http_date(text: str, now: datetime) -> float | None:
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        # asctime dates carry no zone and "-0000" parses as naive; HTTP-dates are always GMT.
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())
