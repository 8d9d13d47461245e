"""TimerListener on a real event loop with a fake clock: monitor, past-due, runOnStartup, no overlap."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from selfhost.config import HostConfig
from selfhost.triggers.timer import ScheduleStatus, StatusStore, TimerListener
from tests.support.trigger_fakes import (
    Call,
    FakeClock,
    FakeInvoker,
    eventually,
    function_info,
    host_config,
    run_async,
)

pytestmark = pytest.mark.unit
EVERY_5_MIN = "0 */5 * * * *"


def at(hour: int, minute: int, second: int = 0) -> dt.datetime:
    return dt.datetime(2024, 1, 1, hour, minute, second, tzinfo=dt.UTC)


@pytest.fixture(autouse=True)
def fast_polling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TimerListener, "poll_interval_s", 0.005)


@pytest.fixture
def config(tmp_path: Path) -> HostConfig:
    return host_config(tmp_path)


def timer_fn(schedule: str = EVERY_5_MIN, **extra: Any) -> Any:
    return function_info("tick", {"type": "timerTrigger", "name": "t", "schedule": schedule, **extra})


def store(config: HostConfig) -> StatusStore:
    return StatusStore(config.state_dir / "timers" / "tick.json")


def stored(config: HostConfig) -> dict[str, str]:
    return dict(json.loads(store(config).path.read_text()))


async def run_for(listener: TimerListener, seconds: float = 0.1) -> None:
    await listener.start()
    await asyncio.sleep(seconds)
    await listener.stop()


def test_first_start_records_next_and_does_not_fire(config: HostConfig) -> None:
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(), invoker, config, FakeClock(at(12, 1)))))
    assert invoker.calls == []
    assert stored(config)["Next"] == at(12, 5).isoformat()


def test_past_due_after_restart_fires_exactly_once(config: HostConfig) -> None:
    # The host last ran at 09:55 and was down for two hours: 24 occurrences were missed.
    store(config).save(ScheduleStatus(at(9, 55), at(10, 0), at(9, 55)), EVERY_5_MIN)
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(), invoker, config, FakeClock(at(12, 0, 30)))))
    assert len(invoker.calls) == 1
    request = invoker.calls[0].kwargs["t"]
    assert request.past_due is True
    assert request.schedule_status == {
        "Last": at(9, 55).isoformat(),
        "Next": at(10, 0).isoformat(),
        "LastUpdated": at(9, 55).isoformat(),
    }
    assert stored(config)["Last"] == at(12, 0, 30).isoformat()
    assert stored(config)["Next"] == at(12, 5).isoformat()


def test_past_due_takes_precedence_over_run_on_startup(config: HostConfig) -> None:
    store(config).save(ScheduleStatus(at(9, 55), at(10, 0), at(9, 55)), EVERY_5_MIN)
    invoker = FakeInvoker()
    fn = timer_fn(runOnStartup=True)
    run_async(run_for(TimerListener(fn, invoker, config, FakeClock(at(12, 0, 30)))))
    assert [c.kwargs["t"].past_due for c in invoker.calls] == [True]


def test_run_on_startup_fires_once_not_past_due(config: HostConfig) -> None:
    store(config).save(ScheduleStatus(at(11, 55), at(12, 5), at(11, 55)), EVERY_5_MIN)
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(runOnStartup=True), invoker, config, FakeClock(at(12, 1)))))
    assert [c.kwargs["t"].past_due for c in invoker.calls] == [False]


def test_no_invocation_when_next_is_still_ahead(config: HostConfig) -> None:
    store(config).save(ScheduleStatus(at(11, 55), at(12, 5), at(11, 55)), EVERY_5_MIN)
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(), invoker, config, FakeClock(at(12, 1)))))
    assert invoker.calls == []


def test_changed_schedule_is_not_past_due(config: HostConfig) -> None:
    store(config).save(ScheduleStatus(at(9, 0), at(10, 0), at(9, 0)), "0 0 * * * *")
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(), invoker, config, FakeClock(at(12, 1)))))
    assert invoker.calls == []
    assert stored(config)["Next"] == at(12, 5).isoformat()


def test_use_monitor_false_never_past_due(config: HostConfig) -> None:
    store(config).save(ScheduleStatus(at(9, 55), at(10, 0), at(9, 55)), EVERY_5_MIN)
    invoker = FakeInvoker()
    run_async(run_for(TimerListener(timer_fn(useMonitor=False), invoker, config, FakeClock(at(12, 1)))))
    assert invoker.calls == []


def test_monitor_is_off_for_schedules_faster_than_a_minute(config: HostConfig) -> None:
    invoker = FakeInvoker()
    listener = TimerListener(
        timer_fn("*/10 * * * * *", runOnStartup=True), invoker, config, FakeClock(at(12, 1))
    )
    run_async(run_for(listener))
    assert listener.monitor is False
    assert invoker.calls[0].kwargs["t"].schedule_status == {}
    assert not store(config).path.exists()


def test_fires_on_schedule_next_from_completion_and_never_overlaps(config: HostConfig) -> None:
    clock = FakeClock(at(12, 4, 59))

    async def long_run(call: Call) -> None:
        if len(invoker.calls) == 1:
            clock.advance(11 * 60)  # the first run lasts 11 minutes: 12:10 and 12:15 pass

    invoker = FakeInvoker(on_call=long_run, duration=0.01)

    async def main() -> None:
        listener = TimerListener(timer_fn(), invoker, config, clock)
        await listener.start()
        await asyncio.sleep(0.05)
        assert invoker.calls == []
        clock.set(at(12, 5))
        await eventually(lambda: len(invoker.calls) == 1 and invoker.running == 0)
        await eventually(lambda: stored(config)["Next"] == at(12, 20).isoformat())
        await asyncio.sleep(0.05)
        assert len(invoker.calls) == 1  # the skipped occurrences do not fire afterwards
        clock.set(at(12, 20))
        await eventually(lambda: len(invoker.calls) == 2)
        await listener.stop()

    run_async(main())
    second = invoker.calls[1].kwargs["t"]
    assert second.past_due is False
    assert second.schedule_status["Last"] == at(12, 5).isoformat()
    assert second.schedule_status["Next"] == at(12, 20).isoformat()
    assert invoker.max_running == 1


def test_a_failing_run_does_not_stop_the_timer(config: HostConfig) -> None:
    clock = FakeClock(at(12, 1))
    invoker = FakeInvoker(fail_times=1)

    async def main() -> None:
        listener = TimerListener(timer_fn(runOnStartup=True), invoker, config, clock)
        await listener.start()
        await eventually(lambda: len(invoker.calls) == 1)
        clock.set(at(12, 5))
        await eventually(lambda: len(invoker.calls) == 2)
        await listener.stop()

    run_async(main())


def test_bad_schedule_is_reported_by_start_not_the_constructor(config: HostConfig) -> None:
    from selfhost.triggers.ncrontab import ScheduleError

    listener = TimerListener(timer_fn("every tuesday"), FakeInvoker(), config, FakeClock())
    with pytest.raises(ScheduleError):
        run_async(listener.start())
