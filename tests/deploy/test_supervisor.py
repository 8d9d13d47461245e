"""The runtime's supervisor (scripts/supervisor.py, used by scripts/devservers.py): back-off,
limit and reset as a pure policy; then real processes: a killed runtime is started again while
the other servers stay up, a runtime that keeps dying is given up, a stop during back-off stops."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from scripts import devservers
from scripts.devservers import Child, Restarter
from scripts.supervisor import RestartPolicy, RestartTracker, describe_exit
from tests.support.waiting import wait_until

pytestmark = pytest.mark.unit

SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]
QUICK = RestartPolicy(first_delay_s=0.01, max_delay_s=0.02, limit=3, window_s=600, stable_s=60)


def test_back_off_doubles_up_to_the_cap() -> None:
    tracker = RestartTracker(RestartPolicy(first_delay_s=1, max_delay_s=30, limit=100))
    delays = [tracker.on_exit(now=float(i), ran_for=0.5) for i in range(8)]
    assert delays == [1, 2, 4, 8, 16, 30, 30, 30]


def test_a_stable_run_resets_the_back_off() -> None:
    tracker = RestartTracker(RestartPolicy(first_delay_s=1, max_delay_s=30, limit=100, stable_s=60))
    assert [tracker.on_exit(0, 1), tracker.on_exit(10, 1), tracker.on_exit(200, 120)] == [1, 2, 1]


def test_the_limit_counts_restarts_within_the_window_only() -> None:
    tracker = RestartTracker(RestartPolicy(limit=2, window_s=600))
    assert tracker.on_exit(0, 1) is not None
    assert tracker.on_exit(100, 1) is not None
    assert tracker.on_exit(200, 1) is None  # 2 restarts within 10 minutes: give up
    assert tracker.on_exit(650, 1) is not None  # the first restart has left the window


def test_an_unusable_policy_is_refused() -> None:
    with pytest.raises(ValueError):
        RestartPolicy(first_delay_s=0)


def test_exits_are_described_as_people_read_them() -> None:
    assert describe_exit(-9) == "killed by SIGKILL"
    assert describe_exit(3) == "exit code 3"


@pytest.fixture
def said(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    lines: list[str] = []
    monkeypatch.setattr(devservers, "_say", lambda message, err=False: lines.append(message))
    return lines


@pytest.fixture
def children(tmp_path: Path) -> Iterator[list[Child]]:
    made: list[Child] = []
    yield made
    for child in made:
        child.stop(grace_s=5)


def child(children: list[Child], tmp_path: Path, name: str, argv: list[str]) -> Child:
    made = Child(name, argv, cwd=tmp_path, log_path=tmp_path / f"{name}.log")
    made.start(None)
    children.append(made)
    return made


def supervise_in_thread(
    servers: list[Child], restarter: Restarter, stop: threading.Event
) -> tuple[threading.Thread, list[int]]:
    result: list[int] = []
    thread = threading.Thread(target=lambda: result.append(devservers.supervise(servers, stop, restarter)))
    thread.start()
    return thread, result


def test_a_killed_runtime_is_started_again_and_the_others_stay_up(
    tmp_path: Path, children: list[Child], said: list[str]
) -> None:
    runtime = child(children, tmp_path, "runtime", SLEEPER)
    azurite = child(children, tmp_path, "Azurite", SLEEPER)
    assert runtime.process is not None and azurite.process is not None
    first, azurite_pid = runtime.process.pid, azurite.process.pid
    stop = threading.Event()
    restarter = Restarter(runtime, None, ready=lambda: True, tracker=RestartTracker(QUICK))
    thread, result = supervise_in_thread([runtime, azurite], restarter, stop)
    try:
        os.killpg(first, signal.SIGKILL)

        wait_until(lambda: runtime.process is not None and runtime.process.pid != first and runtime.exit_code() is None,
                   timeout=30, message="the runtime started again")  # fmt: skip
        wait_until(
            lambda: "devservers: runtime is answering again" in said, timeout=30, message="ready logged"
        )
    finally:
        stop.set()
        thread.join(timeout=30)
    assert result == [0]
    assert azurite.process.pid == azurite_pid and azurite.exit_code() is None
    assert any("runtime died (killed by SIGKILL)" in line and "restarting it in" in line for line in said), (
        said
    )


def test_a_runtime_that_keeps_dying_is_given_up(
    tmp_path: Path, children: list[Child], said: list[str]
) -> None:
    runtime = child(children, tmp_path, "runtime", [sys.executable, "-c", "raise SystemExit(3)"])
    stop = threading.Event()
    restarter = Restarter(runtime, None, ready=lambda: False, tracker=RestartTracker(QUICK))

    code = devservers.supervise([runtime], stop, restarter)

    assert code == 1
    assert restarter.tracker.count == QUICK.limit
    assert sum("restarting it in" in line for line in said) == QUICK.limit
    assert "exit code 3" in said[-1] and "giving up" in said[-1]


def test_a_stop_during_the_back_off_stops_without_restarting(
    tmp_path: Path, children: list[Child], said: list[str]
) -> None:
    runtime = child(children, tmp_path, "runtime", [sys.executable, "-c", "raise SystemExit(1)"])
    assert runtime.process is not None
    first = runtime.process.pid
    stop = threading.Event()
    slow = RestartTracker(RestartPolicy(first_delay_s=300, max_delay_s=300))
    thread, result = supervise_in_thread(
        [runtime], Restarter(runtime, None, ready=lambda: True, tracker=slow), stop
    )

    wait_until(
        lambda: any("restarting it in 300s" in line for line in said), timeout=30, message="in back-off"
    )
    stop.set()
    thread.join(timeout=30)

    assert result == [0]
    assert runtime.process.pid == first  # not started again


def test_another_server_dying_still_stops_everything(
    tmp_path: Path, children: list[Child], said: list[str]
) -> None:
    runtime = child(children, tmp_path, "runtime", SLEEPER)
    maildev = child(children, tmp_path, "maildev", [sys.executable, "-c", "raise SystemExit(2)"])
    restarter = Restarter(runtime, None, ready=lambda: True, tracker=RestartTracker(QUICK))

    assert devservers.supervise([runtime, maildev], threading.Event(), restarter) == 1
    assert any("maildev exited on its own (exit code 2)" in line for line in said), said
