"""Timer schedules: NCRONTAB expressions and TimeSpan intervals (host facts §5). Pure; no I/O.

NCRONTAB (the library the Functions host uses) differs from Vixie cron in ways apps notice:
six fields `sec min hour day month dow` (five fields = no seconds, second 0); day of week 0-6
with 0 = Sunday (7 is rejected); names are case-insensitive prefixes of the English names; and
a time must match **both** day-of-month and day-of-week (cron ORs them when both are given).
`a/n` means `a-max/n`. `?`, `L`, `W` and `#` are not NCRONTAB and are rejected.

A TimeSpan schedule (`hh:mm:ss`, `hh:mm`, `d.hh:mm:ss`, `dd:hh:mm` when the first value is 24
or more, a bare integer = days) fires every interval after the previous run.
"""

from __future__ import annotations

import bisect
import datetime as _dt
import re
from collections.abc import Mapping
from dataclasses import dataclass

from selfhost.triggers.bindingpath import BindingExpressionError, resolve_setting_references

__all__ = [
    "CrontabSchedule",
    "Schedule",
    "ScheduleError",
    "TimeSpanSchedule",
    "fires_more_than_once_a_minute",
    "parse_crontab",
    "parse_schedule",
    "parse_timespan",
]

_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_DAYS = ("sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday")
# (low, high, names) per field, in expression order.
_FIELDS: tuple[tuple[int, int, tuple[str, ...]], ...] = (
    (0, 59, ()),
    (0, 59, ()),
    (0, 23, ()),
    (1, 31, ()),
    (1, 12, _MONTHS),
    (0, 6, _DAYS),
)
# A schedule that never occurs (e.g. 30 February) must not loop forever: the Gregorian
# calendar repeats every 400 years, so nothing that exists is further away than that.
_SEARCH_YEARS = 400


class ScheduleError(ValueError):
    """The schedule text is neither a valid NCRONTAB expression nor a TimeSpan."""


def _parse_value(text: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.isdigit():
        value = int(text)
    else:
        lowered = text.lower()
        matches = [i for i, n in enumerate(names) if len(lowered) >= 3 and n.startswith(lowered)]
        if len(matches) != 1:
            raise ScheduleError(f"{text!r} is not a number or name between {low} and {high}")
        value = matches[0] + low
    if not low <= value <= high:
        raise ScheduleError(f"{value} is outside {low}-{high}")
    return value


def _parse_field(text: str, low: int, high: int, names: tuple[str, ...]) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        base, slash, step_text = part.partition("/")
        step = 1
        if slash:
            if not step_text.isdigit() or int(step_text) == 0:
                raise ScheduleError(f"bad step in {part!r}")
            step = int(step_text)
        if base == "*":
            first, last = low, high
        elif "-" in base:
            a, _, b = base.partition("-")
            first, last = _parse_value(a, low, high, names), _parse_value(b, low, high, names)
            if first > last:
                raise ScheduleError(f"range {part!r} goes backwards")
        else:
            first = _parse_value(base, low, high, names)
            last = high if slash else first
        values.update(range(first, last + 1, step))
    return frozenset(values)


def _next_at_least(sorted_values: tuple[int, ...], value: int) -> int | None:
    i = bisect.bisect_left(sorted_values, value)
    return sorted_values[i] if i < len(sorted_values) else None


@dataclass(frozen=True)
class CrontabSchedule:
    """A parsed NCRONTAB expression; times are evaluated in `tz` (UTC unless given)."""

    expression: str
    seconds: tuple[int, ...]
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]
    # True when every field above seconds is a bare `*` (the useMonitor rule looks at this).
    all_wildcards_above_seconds: bool
    tz: _dt.tzinfo = _dt.UTC

    def matches(self, when: _dt.datetime) -> bool:
        local = when.astimezone(self.tz)
        return (
            local.microsecond == 0
            and local.second in self.seconds
            and local.minute in self.minutes
            and local.hour in self.hours
            and self._day_matches(local.date())
        )

    def _day_matches(self, day: _dt.date) -> bool:
        # NCRONTAB requires both day fields to match (AND), unlike Vixie cron's OR.
        return (
            day.month in self.months and day.day in self.days and (day.weekday() + 1) % 7 in self.days_of_week
        )

    def next_after(self, after: _dt.datetime) -> _dt.datetime | None:
        """The first occurrence strictly later than `after` (aware, UTC); None if never."""
        start = after.astimezone(self.tz).replace(microsecond=0, tzinfo=None)
        start += _dt.timedelta(seconds=1)
        while True:
            found = self._next_wall_time(start)
            if found is None:
                return None
            result = found.replace(tzinfo=self.tz).astimezone(_dt.UTC)
            # Around a DST fold the wall-clock successor can map to an earlier instant.
            if result > after:
                return result
            start = found + _dt.timedelta(seconds=1)

    def _next_wall_time(self, t: _dt.datetime) -> _dt.datetime | None:
        limit = min(t.year + _SEARCH_YEARS, _dt.MAXYEAR - 1)
        while t.year <= limit:
            if t.month not in self.months or not self._day_matches(t.date()):
                t = _dt.datetime.combine(t.date() + _dt.timedelta(days=1), _dt.time())
                if t.month not in self.months:
                    t = self._first_day_of_next_month(t)
                continue
            hour = _next_at_least(self.hours, t.hour)
            if hour is None:
                t = _dt.datetime.combine(t.date() + _dt.timedelta(days=1), _dt.time())
                continue
            if hour != t.hour:
                t = t.replace(hour=hour, minute=0, second=0)
            minute = _next_at_least(self.minutes, t.minute)
            if minute is None:
                t = t.replace(minute=0, second=0) + _dt.timedelta(hours=1)
                continue
            if minute != t.minute:
                t = t.replace(minute=minute, second=0)
            second = _next_at_least(self.seconds, t.second)
            if second is None:
                t = t.replace(second=0) + _dt.timedelta(minutes=1)
                continue
            return t.replace(second=second)
        return None

    def _first_day_of_next_month(self, t: _dt.datetime) -> _dt.datetime:
        # Skip whole months that cannot match instead of walking their days one by one.
        year, month = t.year, t.month
        while month not in self.months:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
            if year > _dt.MAXYEAR - 1:
                break
        return _dt.datetime(min(year, _dt.MAXYEAR - 1), month, 1)


@dataclass(frozen=True)
class TimeSpanSchedule:
    """Fires every `interval` after the previous run (or after start-up)."""

    expression: str
    interval: _dt.timedelta

    def next_after(self, after: _dt.datetime) -> _dt.datetime | None:
        return after + self.interval

    def matches(self, when: _dt.datetime) -> bool:
        # Any instant can be an occurrence: the schedule is relative to the last run.
        return True


Schedule = CrontabSchedule | TimeSpanSchedule


def parse_crontab(expression: str, tz: _dt.tzinfo = _dt.UTC) -> CrontabSchedule:
    fields = expression.split()
    if len(fields) == 5:
        fields = ["0", *fields]  # five fields: no seconds field, fire at second 0
    elif len(fields) != 6:
        raise ScheduleError(f"{expression!r} has {len(fields)} fields; NCRONTAB needs 5 or 6")
    try:
        parsed = [_parse_field(f, lo, hi, names) for f, (lo, hi, names) in zip(fields, _FIELDS, strict=True)]
    except ScheduleError as exc:
        raise ScheduleError(f"invalid NCRONTAB expression {expression!r}: {exc}") from exc
    return CrontabSchedule(
        expression=expression,
        seconds=tuple(sorted(parsed[0])),
        minutes=tuple(sorted(parsed[1])),
        hours=tuple(sorted(parsed[2])),
        days=parsed[3],
        months=parsed[4],
        days_of_week=parsed[5],
        all_wildcards_above_seconds=all(f == "*" for f in fields[1:]),
        tz=tz,
    )


_TIMESPAN = re.compile(r"^(?:(\d+)\.)?(\d+):(\d+)(?::(\d+)(?:\.(\d{1,7}))?)?$")


def parse_timespan(text: str) -> _dt.timedelta:
    """Parse a .NET TimeSpan (invariant culture) as the timer extension accepts it."""
    text = text.strip()
    if text.isdigit():
        return _dt.timedelta(days=int(text))
    match = _TIMESPAN.match(text)
    if match is None:
        raise ScheduleError(f"{text!r} is not a TimeSpan")
    days, first, second, third, fraction = match.groups()
    a, b = int(first), int(second)
    if days is None and third is not None and fraction is None and a >= 24:
        # .NET reads "hh:mm:ss" with hh >= 24 as days:hours:minutes.
        span = _dt.timedelta(days=a, hours=b, minutes=int(third))
        if b > 23 or int(third) > 59:
            raise ScheduleError(f"{text!r} is not a TimeSpan")
        return span
    c = int(third) if third is not None else 0
    if a > 23 or b > 59 or c > 59:
        raise ScheduleError(f"{text!r} is not a TimeSpan")
    micro = int((fraction or "0").ljust(7, "0")) // 10
    return _dt.timedelta(days=int(days or 0), hours=a, minutes=b, seconds=c, microseconds=micro)


def parse_schedule(text: str, environ: Mapping[str, str] | None = None, tz: _dt.tzinfo = _dt.UTC) -> Schedule:
    """Resolve `%Setting%`, then parse as NCRONTAB (tried first, like the host) or TimeSpan."""
    try:
        resolved = resolve_setting_references(text, environ).strip()
    except BindingExpressionError as exc:
        raise ScheduleError(str(exc)) from exc
    try:
        return parse_crontab(resolved, tz)
    except ScheduleError as cron_error:
        try:
            interval = parse_timespan(resolved)
        except ScheduleError:
            raise cron_error from None
    if interval <= _dt.timedelta(0):
        raise ScheduleError(f"TimeSpan schedule {resolved!r} must be positive")
    return TimeSpanSchedule(expression=resolved, interval=interval)


def fires_more_than_once_a_minute(schedule: Schedule, now: _dt.datetime) -> bool:
    """The timer extension's rule for turning `useMonitor` off (host facts §5)."""
    if isinstance(schedule, TimeSpanSchedule):
        return schedule.interval < _dt.timedelta(minutes=1)
    if not schedule.all_wildcards_above_seconds:
        return False
    first = schedule.next_after(now)
    second = schedule.next_after(first) if first is not None else None
    return first is not None and second is not None and second - now <= _dt.timedelta(minutes=1)
