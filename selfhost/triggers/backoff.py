"""Randomized exponential backoff for polling listeners (host facts §3.2).

Same strategy as the WebJobs SDK's `RandomizedExponentialBackoffStrategy`: the first delay is the
minimum; the k-th delay after it is `min + U(0.8, 1.2) · 2^(k-1) · min`, capped at the maximum;
finding work resets it. `backoff_delay` is the pure formula; `Backoff` keeps the counter.
"""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["RANDOMIZATION", "Backoff", "backoff_delay"]

RANDOMIZATION = 0.2
# 2^60 · 100 ms is far beyond any sane maximum; stopping the exponent there avoids overflow.
_MAX_EXPONENT = 60


def backoff_delay(attempt: int, minimum: float, maximum: float, factor: float = 1.0) -> float:
    """Delay in seconds before poll number `attempt` (0 = first empty poll) with jitter `factor`.

    `factor` is the random draw in [1 - RANDOMIZATION, 1 + RANDOMIZATION]. Because consecutive
    steps at least double the increment while the jitter is at most ±20 %, the sequence is
    non-decreasing whatever the draws, and never exceeds `maximum`.
    """
    if attempt <= 0:
        return min(minimum, maximum)
    exponent = min(attempt - 1, _MAX_EXPONENT)
    return min(maximum, minimum + factor * (2.0**exponent) * minimum)


class Backoff:
    """Stateful wrapper: `next_delay()` after an empty poll, `reset()` after finding work."""

    def __init__(
        self,
        minimum: float = 0.1,
        maximum: float = 60.0,
        draw: Callable[[], float] | None = None,
    ) -> None:
        if minimum <= 0 or maximum < minimum:
            raise ValueError(f"backoff needs 0 < minimum <= maximum, got {minimum}, {maximum}")
        self.minimum = minimum
        self.maximum = maximum
        self._draw = draw or (lambda: random.uniform(1.0 - RANDOMIZATION, 1.0 + RANDOMIZATION))
        self._attempt = 0
        self._at_maximum = False

    def next_delay(self) -> float:
        if self._at_maximum:
            # Like the SDK: once the cap is reached it stays there until work is found; a new
            # draw could otherwise fall below the cap and make the sequence go down.
            return self.maximum
        delay = backoff_delay(self._attempt, self.minimum, self.maximum, self._draw())
        if delay < self.maximum:
            self._attempt += 1
        else:
            self._at_maximum = True
        return delay

    def reset(self) -> None:
        self._attempt = 0
        self._at_maximum = False
