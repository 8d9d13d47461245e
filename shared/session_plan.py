"""Pure decisions of a session's orchestration: what to do when nothing is under way.

A session with nothing to move either ends (its completion message came and every item is
done, or it had no new data for its idle timeout), continues as new (it used its generation's
budget, or items are queued beyond it), or waits for the next wake, at most `rescan` long.
No I/O, no clock: `now` is the orchestration's.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import Enum

from shared.session_tasks import GENERATION_BUDGET, IDLE_RESCAN_MINUTES

__all__ = ["IdleStep", "Step", "idle_step"]


class Step(Enum):
    FINISH = "finish"
    CONTINUE = "continue"
    WAIT = "wait"


@dataclass(frozen=True)
class IdleStep:
    kind: Step
    wait_s: float = 0.0
    note: str | None = None  # why a session ended without its completion message


def _instant(text: str | None, default: dt.datetime) -> dt.datetime:
    if not text:
        return default
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


def idle_step(
    *,
    completed: bool,
    open_items: int,
    more: bool,
    started: int,
    now: dt.datetime,
    last_activity: str | None,
    idle_timeout: dt.timedelta,
    rescan: dt.timedelta = dt.timedelta(minutes=IDLE_RESCAN_MINUTES),
) -> IdleStep:
    if more or started >= GENERATION_BUDGET:
        return IdleStep(Step.CONTINUE)
    if completed and open_items == 0:
        return IdleStep(Step.FINISH)
    if completed:
        return IdleStep(Step.CONTINUE)  # open items the next scan will hand out
    now = now if now.tzinfo else now.replace(tzinfo=dt.UTC)
    left = _instant(last_activity, now) + idle_timeout - now
    if left <= dt.timedelta(0):
        minutes = int(idle_timeout.total_seconds() // 60)
        return IdleStep(
            Step.FINISH, note=f"no session-completed message within {minutes} minutes of its last data"
        )
    return IdleStep(Step.WAIT, wait_s=min(left, rescan).total_seconds())
