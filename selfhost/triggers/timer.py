"""Timer trigger listener (host facts §5): schedule, schedule monitor, past-due and runOnStartup.

Algorithm of one listener (one asyncio task, so invocations of a timer never overlap):
1. With a monitor, read `<state_dir>/timers/<function>.json` ({Last, Next, LastUpdated} plus
   the schedule text). No file: record Next = next occurrence after now. Schedule text changed:
   recompute Next, no past-due. Otherwise, if now > Next: exactly ONE invocation with
   past_due=True, however many occurrences were missed.
2. Else, if runOnStartup: one invocation (past_due=False). Past-due takes precedence.
3. Loop: sleep until Next (re-reading the injected clock at least every `poll_interval_s`),
   invoke, then Last = start time (or the scheduled time if it fired early), Next = next
   occurrence after the *completion* time (occurrences that pass during a long run are
   skipped), and persist atomically.

The monitor is off when `useMonitor` is false or the schedule fires more than once a minute; then
no status is kept, `schedule_status` is empty and nothing is ever past due. The real host stores
the status in blob `azure-webjobs-hosts/timers/{hostId}/...` and holds a singleton lease; one
process on one machine needs neither, so the state folder is used instead.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import json
import logging
import os
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from azure.functions.timer import TimerRequest

from selfhost.config import HostConfig
from selfhost.functions import Clock, FunctionInfo, Invoker
from selfhost.triggers.ncrontab import Schedule, ScheduleError, fires_more_than_once_a_minute, parse_schedule
from selfhost.triggers.tasks import cancel_and_wait, start_logged

__all__ = ["ScheduleStatus", "StatusStore", "TimerListener"]

log = logging.getLogger(__name__)

# What the .NET host serialises for a `Last` that never happened (default(DateTime)).
_NEVER = "0001-01-01T00:00:00"


@dataclass(frozen=True)
class ScheduleStatus:
    last: _dt.datetime | None
    next: _dt.datetime
    last_updated: _dt.datetime

    def to_binding(self) -> dict[str, str]:
        """The `ScheduleStatus` dict the Python worker hands to `TimerRequest.schedule_status`."""
        return {
            "Last": self.last.isoformat() if self.last else _NEVER,
            "Next": self.next.isoformat(),
            "LastUpdated": self.last_updated.isoformat(),
        }


class StatusStore:
    """One timer's status file, written atomically (temp file, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> tuple[ScheduleStatus, str] | None:
        """The stored status and the schedule text it was computed for; None if absent/unreadable."""
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            last = data.get("Last")
            status = ScheduleStatus(
                last=_dt.datetime.fromisoformat(last) if last and last != _NEVER else None,
                next=_dt.datetime.fromisoformat(data["Next"]),
                last_updated=_dt.datetime.fromisoformat(data["LastUpdated"]),
            )
            return status, str(data.get("Schedule", ""))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            # A damaged file must not stop the timer; it only costs one past-due detection.
            log.warning("Ignoring unreadable timer status %s: %s", self.path, exc)
            return None

    def save(self, status: ScheduleStatus, schedule_text: str) -> None:
        payload = {**status.to_binding(), "Schedule": schedule_text}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(payload, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)


def _time_zone(environ: Mapping[str, str]) -> _dt.tzinfo:
    """`WEBSITE_TIME_ZONE` as an IANA name (Linux plans use those); UTC otherwise."""
    name = environ.get("WEBSITE_TIME_ZONE", "").strip()
    if not name:
        return _dt.UTC
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        log.warning("WEBSITE_TIME_ZONE=%r is not an IANA time zone; timers use UTC", name)
        return _dt.UTC


class TimerListener:
    """Runs one timer-triggered function on its schedule (see the module docstring)."""

    # Longest single sleep: the clock is re-read after each, so clock jumps (and test clocks)
    # are noticed within this time.
    poll_interval_s: ClassVar[float] = 1.0

    def __init__(
        self,
        fn: FunctionInfo,
        invoker: Invoker,
        config: HostConfig,
        clock: Clock,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if environ is None else environ
        self._fn = fn
        self._invoker = invoker
        self._clock = clock
        self._arg = str(fn.trigger.get("name"))
        self._schedule_text = str(fn.trigger.get("schedule"))
        # A bad schedule is reported by start(), so the host can log it and keep running
        # the other functions (the real host marks just that function as in error).
        self._config_error: ScheduleError | None = None
        self.schedule: Schedule | None = None
        try:
            self.schedule = parse_schedule(self._schedule_text, env, _time_zone(env))
        except ScheduleError as exc:
            self._config_error = exc
        self._run_on_startup = bool(fn.trigger.get("runOnStartup") or False)
        use_monitor = fn.trigger.get("useMonitor")
        self._use_monitor = True if use_monitor is None else bool(use_monitor)
        self.monitor = False
        self.store = StatusStore(config.state_dir / "timers" / f"{fn.name}.json")
        self.status: ScheduleStatus | None = None
        self.next: _dt.datetime | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._config_error is not None:
            raise self._config_error
        now = self._clock.now()
        self.monitor = self._use_monitor and not fires_more_than_once_a_minute(self._active_schedule, now)
        if self._use_monitor and not self.monitor:
            log.info("Timer %s fires more than once a minute: schedule monitor disabled", self._fn.name)
        self._task = start_logged(self._run(), f"timer:{self._fn.name}")

    @property
    def _active_schedule(self) -> Schedule:
        assert self.schedule is not None, "start() has checked the configuration"
        return self.schedule

    async def stop(self) -> None:
        task, self._task = self._task, None
        await cancel_and_wait(task)

    async def _run(self) -> None:
        past_due = await self._check_past_due() if self.monitor else False
        if past_due:
            await self._invoke(past_due=True)
        elif self._run_on_startup:
            await self._invoke(past_due=False)
        if self.next is None:
            self.next = self._active_schedule.next_after(self._clock.now())
        while self.next is not None:
            await self._sleep_until(self.next)
            await self._invoke(past_due=False)
        log.warning("Timer %s: schedule %r never occurs again", self._fn.name, self._schedule_text)

    async def _check_past_due(self) -> bool:
        now = self._clock.now()
        stored = await asyncio.to_thread(self.store.load)
        if stored is not None and stored[1] == self._schedule_text:
            self.status = stored[0]
            self.next = stored[0].next
            return now > stored[0].next
        # First start, or the schedule changed: record the next occurrence so that an outage
        # from now on is detected as past due.
        self.next = self._active_schedule.next_after(now)
        if self.next is not None:
            self.status = ScheduleStatus(None if stored is None else stored[0].last, self.next, now)
            await asyncio.to_thread(self.store.save, self.status, self._schedule_text)
        return False

    async def _sleep_until(self, when: _dt.datetime) -> None:
        while (remaining := (when - self._clock.now()).total_seconds()) > 0:
            await asyncio.sleep(min(remaining, self.poll_interval_s))

    async def _invoke(self, *, past_due: bool) -> None:
        scheduled = self.next
        started = self._clock.now()
        request = TimerRequest(
            past_due=past_due,
            schedule_status=self.status.to_binding() if self.monitor and self.status else None,
            schedule={"AdjustForDST": True},
        )
        try:
            await self._invoker.invoke(self._fn, {self._arg: request}, binding_data={})
        except Exception as exc:  # noqa: BLE001 - user code may raise anything; the timer must go on
            # Timers have no built-in retry (host facts §5); the invoker logged the traceback.
            log.warning("Timer function %s failed: %s; waiting for the next occurrence", self._fn.name, exc)
        finished = self._clock.now()
        self.next = self._active_schedule.next_after(finished)
        if self.monitor and self.next is not None:
            # Last is the scheduled time when the timer fired early (clock skew), as in the host.
            last = scheduled if scheduled is not None and started < scheduled else started
            self.status = ScheduleStatus(last, self.next, finished)
            await asyncio.to_thread(self.store.save, self.status, self._schedule_text)
