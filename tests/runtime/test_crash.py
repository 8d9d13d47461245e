"""Crash safety: SIGKILL the runtime mid-work, start it again on the same state folder.

Every instance continues; activities whose completion was committed before the kill never run
again; ones that were running run again (at-least-once); timers still fire (overdue ones at
once); an instance accepted over HTTP just before the kill is not lost.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.apps import app_root
from tests.support.durable_client import DurableApp
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.runtime, pytest.mark.slow]


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[RuntimeProcess]:
    rt = RuntimeProcess(
        app_root("durable_app"), tmp_path / "state", env={"DURABLE_APP_RUNLOG": str(tmp_path / "runs.log")}
    )
    rt.start()
    try:
        yield rt
    finally:
        rt.stop()


def runs(rt: RuntimeProcess) -> Counter[str]:
    path = Path(rt.env["DURABLE_APP_RUNLOG"])
    return Counter(path.read_text().splitlines()) if path.exists() else Counter()


def committed_activities(rt: RuntimeProcess, instance_id: str) -> list[str]:
    """Run-log keys of the activities whose TaskCompleted is in the persisted history."""
    db = sqlite3.connect(next((rt.state_dir / "durable").glob("*.sqlite3")))
    try:
        events = [json.loads(r[0]) for r in db.execute(
            "SELECT event FROM history WHERE instance_id=? ORDER BY seq", (instance_id,))]  # fmt: skip
    finally:
        db.close()
    scheduled = {e["EventId"]: e for e in events if e["EventType"] == 4}
    keys = []
    for e in events:
        if e["EventType"] == 5:
            s = scheduled[e["TaskScheduledId"]]
            keys.append(f"{s['Name']}:{json.dumps(json.loads(s['Input']), sort_keys=True)}")
    return keys


def kill_and_restart(rt: RuntimeProcess, pause: float = 0.0) -> None:
    rt.kill()
    if pause:
        time.sleep(pause)
    rt.start()


def test_kill_during_fan_out(runtime: RuntimeProcess) -> None:
    app = DurableApp(runtime)
    started = app.start("slow_fan_out", 60)
    wait_until(lambda: sum(runs(runtime).values()) >= 15, timeout=60, message="some activities ran")
    runtime.kill()
    committed = committed_activities(runtime, started["id"])
    assert committed, "the kill came before any completion was committed; the test proves nothing"
    runtime.start()
    assert app.wait(started, timeout=120)["output"] == sum(i * 2 for i in range(60))
    counts = runs(runtime)
    for key in committed:
        assert counts[key] == 1, f"{key} completed before the kill but ran {counts[key]} times"
    assert all(counts[f"slow_double:{i}"] >= 1 for i in range(60))
    app.http.close()


def test_kill_during_timer_fires_overdue_timer_at_once(runtime: RuntimeProcess) -> None:
    app = DurableApp(runtime)
    started = app.start("timer", 3)
    app.wait_status(started, "Running")
    kill_and_restart(runtime, pause=4.0)  # the timer is overdue when the runtime comes back
    restarted = time.monotonic()
    out = app.wait(started, timeout=30)["output"]
    assert time.monotonic() - restarted < 10
    assert out["waited"] >= 3 and out["after"] == "Hello after timer"
    assert runs(runtime)['hello:"after timer"'] == 1
    app.http.close()


def test_kill_during_retry_wait(runtime: RuntimeProcess) -> None:
    app = DurableApp(runtime)
    started = app.start("slow_retry", "crash-key")
    key = 'flaky:{"fail_times": 1, "key": "crash-key"}'
    wait_until(lambda: runs(runtime)[key] == 1, timeout=30, message="first attempt ran")
    time.sleep(0.5)  # the failure is committed and the 3 s retry timer is pending
    kill_and_restart(runtime)
    assert app.wait(started, timeout=60)["output"] == "ok on attempt 2"
    assert runs(runtime)[key] == 2
    app.http.close()


def test_instance_accepted_just_before_kill_is_not_lost(runtime: RuntimeProcess) -> None:
    app = DurableApp(runtime)
    started = app.start("chaining")
    kill_and_restart(runtime)
    assert app.wait(started, timeout=60)["output"] == ["Hello Tokyo", "Hello Seattle", "Hello London"]
    app.http.close()


def test_second_runtime_on_same_state_folder_refuses(runtime: RuntimeProcess, tmp_path: Path) -> None:
    other = RuntimeProcess(runtime.app_root, runtime.state_dir)
    other.start(wait=False)
    assert other.process is not None
    code = other.process.wait(timeout=30)
    other.stop()
    assert code != 0
    assert "already" in other.log_text()
    assert runtime.process is not None and runtime.process.poll() is None  # the first one is unharmed
