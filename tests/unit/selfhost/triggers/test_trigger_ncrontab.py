"""NCRONTAB and TimeSpan schedules: examples from the docs, NCRONTAB quirks, and properties."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from selfhost.triggers.ncrontab import (
    CrontabSchedule,
    ScheduleError,
    TimeSpanSchedule,
    fires_more_than_once_a_minute,
    parse_crontab,
    parse_schedule,
    parse_timespan,
)

pytestmark = pytest.mark.unit
UTC = dt.UTC


def at(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=UTC)


@pytest.mark.parametrize(
    ("expression", "after", "expected"),
    [
        ("0 */5 * * * *", at(2024, 3, 1, 10, 2, 30), at(2024, 3, 1, 10, 5)),
        ("0 */5 * * * *", at(2024, 3, 1, 10, 5), at(2024, 3, 1, 10, 10)),  # strictly after
        ("*/15 * * * *", at(2024, 3, 1, 10, 2, 30), at(2024, 3, 1, 10, 15)),  # 5 fields: second 0
        ("0 30 9 * * Mon-Fri", at(2024, 3, 1, 10), at(2024, 3, 4, 9, 30)),  # Fri → Mon
        ("0 0 0 13 * Fri", at(2024, 1, 1), at(2024, 9, 13)),  # day AND dow (NCRONTAB)
        ("0 0 0 1 Jan,JUL *", at(2024, 2, 1), at(2024, 7, 1)),
        ("0 5/20 * * * *", at(2024, 3, 1, 10, 26), at(2024, 3, 1, 10, 45)),  # a/n = a-max/n
        ("0 0 0 29 2 *", at(2024, 3, 1), at(2028, 2, 29)),
        ("10,20 * * * * *", at(2024, 3, 1, 23, 59, 59), at(2024, 3, 2, 0, 0, 10)),
        ("0 0 12 * * sunday", at(2024, 3, 1), at(2024, 3, 3, 12)),
        ("0 0 * * * *", at(2024, 12, 31, 23, 30), at(2025, 1, 1)),
    ],
)
def test_next_occurrence_examples(expression: str, after: dt.datetime, expected: dt.datetime) -> None:
    assert parse_crontab(expression).next_after(after) == expected


def test_vixie_or_semantics_do_not_apply() -> None:
    # In Vixie cron "0 0 13 * 5" fires on every 13th AND every Friday; NCRONTAB needs both.
    schedule = parse_crontab("0 0 0 13 * 5")
    assert not schedule.matches(at(2024, 3, 13))  # a Wednesday
    assert not schedule.matches(at(2024, 3, 15))  # a Friday, not the 13th
    assert schedule.matches(at(2024, 9, 13))


def test_impossible_date_never_occurs() -> None:
    assert parse_crontab("0 0 0 30 2 *").next_after(at(2024, 1, 1)) is None


@pytest.mark.parametrize(
    "expression",
    [
        "* * * *",
        "* * * * * * *",
        "60 * * * * *",
        "0 0 24 * * *",
        "0 0 0 * * 7",
        "0 5-2 * * * *",
        "*/0 * * * * *",
        "0 0 0 L * *",
        "0 0 0 ? * *",
        "0 0 0 * * MON#2",
        "0 0 0 1 ju *",
        "0 0 0 1 xyz *",
    ],
)
def test_invalid_expressions_are_rejected(expression: str) -> None:
    with pytest.raises(ScheduleError):
        parse_crontab(expression)


def test_setting_reference_is_resolved() -> None:
    schedule = parse_schedule("%SCHEDULE%", environ={"SCHEDULE": "0 0 * * * *"})
    assert isinstance(schedule, CrontabSchedule)
    assert schedule.expression == "0 0 * * * *"
    with pytest.raises(ScheduleError, match="MISSING"):
        parse_schedule("%MISSING%", environ={})


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("00:00:30", dt.timedelta(seconds=30)),
        ("01:00", dt.timedelta(hours=1)),
        ("1.02:03:04", dt.timedelta(days=1, hours=2, minutes=3, seconds=4)),
        ("24:00:00", dt.timedelta(days=24)),  # first value >= 24: dd:hh:mm
        ("00:00:01.5", dt.timedelta(seconds=1.5)),
        ("2", dt.timedelta(days=2)),
    ],
)
def test_timespans(text: str, expected: dt.timedelta) -> None:
    assert parse_timespan(text) == expected
    schedule = parse_schedule(text)
    assert isinstance(schedule, TimeSpanSchedule)
    assert schedule.next_after(at(2024, 1, 1)) == at(2024, 1, 1) + expected


@pytest.mark.parametrize("text", ["25:61:00", "00:60:00", "1:2:3:4", "soon", "00:00:00"])
def test_bad_timespans(text: str) -> None:
    with pytest.raises(ScheduleError):
        parse_schedule(text)


@pytest.mark.parametrize(
    ("text", "expected"),
    # Cases from the timer extension's own ShouldDisableScheduleMonitor tests, plus TimeSpans.
    [
        ("* * * * * *", True),
        ("*/30 * * * * *", True),
        ("  */5    * *      * * *", True),
        ("10,20,45 * * * * *", True),
        ("0 * * * * *", False),
        ("30 * * * * *", False),
        ("0 */5 * * * *", False),
        ("* 30 * * * *", False),
        ("* 1-5 * * * *", False),
        ("* * 12 * * Mon", False),
        ("00:00:30", True),
        ("00:01:00", False),
    ],
)
def test_monitor_rule(text: str, expected: bool) -> None:
    assert fires_more_than_once_a_minute(parse_schedule(text), at(2024, 1, 1)) is expected


def test_time_zone_is_applied() -> None:
    from zoneinfo import ZoneInfo

    schedule = parse_crontab("0 0 9 * * *", ZoneInfo("Europe/Berlin"))
    assert schedule.next_after(at(2024, 1, 1)) == at(2024, 1, 1, 8)  # CET = UTC+1
    assert schedule.next_after(at(2024, 7, 1)) == at(2024, 7, 1, 7)  # CEST = UTC+2


# --- properties -------------------------------------------------------------------------------


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    value = st.integers(low, high)
    single = value.map(str)
    ranged = st.tuples(value, value).map(lambda p: f"{min(p)}-{max(p)}")
    stepped = st.tuples(st.sampled_from(["*", str(low)]), st.integers(1, high - low + 1)).map(
        lambda p: f"{p[0]}/{p[1]}"
    )
    part = st.one_of(single, ranged, stepped)
    return st.one_of(st.just("*"), st.lists(part, min_size=1, max_size=3).map(",".join))


EXPRESSIONS = st.tuples(
    _field(0, 59), _field(0, 59), _field(0, 23), _field(1, 28), _field(1, 12), _field(0, 6)
).map(" ".join)
INSTANTS = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2090, 1, 1), timezones=st.just(UTC)
)


@settings(max_examples=300, deadline=None)
@given(EXPRESSIONS, INSTANTS, st.lists(st.floats(0, 1), min_size=5, max_size=5))
def test_next_is_the_first_match_after(expression: str, after: dt.datetime, probes: list[float]) -> None:
    schedule = parse_crontab(expression)
    first = schedule.next_after(after)
    if first is None:  # only possible if day and dow can never coincide: not with days 1-28
        pytest.fail(f"{expression} never occurs")
    assert first > after
    assert schedule.matches(first)
    second = schedule.next_after(first)
    assert second is not None and second > first and schedule.matches(second)
    # Nothing in between matches: sampled probes, plus every second when the gap is short.
    start = after.replace(microsecond=0) + dt.timedelta(seconds=1)
    gap = int((first - start).total_seconds())
    instants = [start + dt.timedelta(seconds=int(p * gap)) for p in probes]
    if gap <= 3 * 3600:
        instants = [start + dt.timedelta(seconds=s) for s in range(gap)]
    for instant in instants:
        if instant < first:
            assert not schedule.matches(instant), f"{expression}: {instant} matches before {first}"
