"""A per-caller request rate limit: a token bucket per caller, in this process's memory.

Each caller (`Caller.bucket`: the identity, else a digest of the presented key) may make
`per_minute` requests in any minute, in bursts up to the same number; over it the API answers 429
with `Retry-After` saying when the next request will pass. The buckets are per instance: with N
instances behind a load balancer a caller gets at most N times the rate, which still stops a
runaway loop; an exact global limit would cost a storage round trip per request. Old buckets are
dropped so the table stays small. The clock is injected.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RateLimiter"]

_MAX_BUCKETS = 10_000


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    def __init__(self, per_minute: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = per_minute
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def admit(self, key: str) -> float | None:
        """None when the request may pass (and is counted); else the seconds to wait."""
        if self.per_minute <= 0:
            return None
        rate = self.per_minute / 60.0
        now = self._clock()
        with self._lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= _MAX_BUCKETS:
                    self._drop_full(now, rate)
                bucket = self._buckets[key] = _Bucket(float(self.per_minute), now)
            bucket.tokens = min(float(self.per_minute), bucket.tokens + (now - bucket.at) * rate)
            bucket.at = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return None
            return (1.0 - bucket.tokens) / rate

    def retry_after_header(self, wait_s: float) -> str:
        return str(max(1, math.ceil(wait_s)))

    def _drop_full(self, now: float, rate: float) -> None:
        """Forget callers whose bucket has refilled: they are as if new."""
        for key in [k for k, b in self._buckets.items() if b.tokens + (now - b.at) * rate >= self.per_minute]:
            del self._buckets[key]
        if len(self._buckets) >= _MAX_BUCKETS:  # all busy: forget the oldest half
            for key in sorted(self._buckets, key=lambda k: self._buckets[k].at)[: _MAX_BUCKETS // 2]:
                del self._buckets[key]
