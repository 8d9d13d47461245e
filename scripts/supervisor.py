"""When the runtime dies, start it again: the restart policy of `make run` and the service.

`RestartTracker.on_exit` is pure (the caller passes the clock), so the policy is tested without
sleeping: the first restart waits `first_delay_s`, each quick death after it twice as long up to
`max_delay_s`, a run that lasted `stable_s` resets the back-off, and after `limit` restarts
within `window_s` it gives up (a runtime that cannot start, e.g. a broken setting, must not
restart forever: the caller then stops everything and exits 1, and systemd's own start limit
takes over). The runtime loses no work by dying (its durable store commits each episode with the
work it schedules), so restarting is always safe. Standard library only.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass, field

__all__ = ["RestartPolicy", "RestartTracker", "describe_exit"]


@dataclass(frozen=True)
class RestartPolicy:
    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    factor: float = 2.0
    # 5 restarts in 10 minutes: far more than a healthy runtime needs (each death is a bug or a
    # kill), few enough that a runtime failing at start-up gives up within about a minute.
    limit: int = 5
    window_s: float = 600.0
    stable_s: float = 60.0

    def __post_init__(self) -> None:
        if (
            self.first_delay_s <= 0
            or self.max_delay_s < self.first_delay_s
            or self.factor < 1
            or self.limit < 1
        ):
            raise ValueError(f"not a usable restart policy: {self}")


@dataclass
class RestartTracker:
    """Restarts of one process: when (monotonic seconds) and how many quick deaths in a row."""

    policy: RestartPolicy = field(default_factory=RestartPolicy)
    restarts: list[float] = field(default_factory=list)
    streak: int = 0

    def on_exit(self, now: float, ran_for: float) -> float | None:
        """The process died at `now` after running `ran_for` seconds: the wait before starting it
        again, or None when the limit is reached (give up)."""
        p = self.policy
        self.restarts = [t for t in self.restarts if now - t < p.window_s]
        if len(self.restarts) >= p.limit:
            return None
        if ran_for >= p.stable_s:
            self.streak = 0
        delay = min(p.max_delay_s, p.first_delay_s * p.factor**self.streak)
        self.streak += 1
        self.restarts.append(now)
        return delay

    @property
    def count(self) -> int:
        """Restarts within the window so far."""
        return len(self.restarts)


def describe_exit(code: int) -> str:
    """`exit code 1`, or `killed by SIGKILL` for a negative Popen return code."""
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
