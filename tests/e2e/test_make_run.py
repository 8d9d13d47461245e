"""`make run` as a developer runs it: servers up, health ok, Ctrl-C stops every child process.

The run uses free ports and a temporary STATE_DIR, so it does not collide with a developer's own
`make run`. Ctrl-C is simulated the way a terminal sends it: SIGINT to the whole process group.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.ports import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite, pytest.mark.slow]  # `make run` starts Azurite

ROOT = Path(__file__).resolve().parents[2]
HEALTH_TIMEOUT_S = 60.0
# Make state of an outer `make test` (jobserver, overrides) must not leak into the inner make.
MAKE_ENV = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


class MakeRun:
    """One `make run` in its own process group, its output in a file."""

    def __init__(self, state_dir: Path, log_path: Path) -> None:
        self.ports = {
            name: free_port()
            for name in (
                "RUNTIME_PORT",
                "AZURITE_BLOB_PORT",
                "AZURITE_QUEUE_PORT",
                "AZURITE_TABLE_PORT",
                "MAILDEV_SMTP_PORT",
                "MAILDEV_WEB_PORT",
            )
        }
        self.state_dir = state_dir
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self.seen: list[psutil.Process] = []  # every descendant ever listed, killed at teardown

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['RUNTIME_PORT']}"

    def start(self) -> None:
        env = {key: value for key, value in os.environ.items() if key not in MAKE_ENV}
        argv = ["make", "--no-print-directory", "run", f"STATE_DIR={self.state_dir}"]
        argv += [f"{name}={port}" for name, port in self.ports.items()]
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def descendants(self) -> list[psutil.Process]:
        assert self.process is not None
        found = list(psutil.Process(self.process.pid).children(recursive=True))
        self.seen += found
        return found


@pytest.fixture
def make_run(tmp_path: Path) -> Iterator[MakeRun]:
    if shutil.which("make") is None:
        pytest.skip("GNU make is not installed")
    run = MakeRun(tmp_path / "state", tmp_path / "make-run.log")
    run.start()
    assert run.process is not None
    try:
        yield run
    finally:
        # Whatever the test saw or did, no server outlives it.
        if run.process.poll() is None:
            run.descendants()
            os.killpg(run.process.pid, signal.SIGKILL)
            run.process.wait(timeout=10)
        for child in run.seen:
            if child.is_running():
                child.kill()


def health_or_exit(run: MakeRun) -> tuple[str, object] | None:
    """("exited", code) once make has exited, ("ok", body) once health is 200, else None."""
    assert run.process is not None
    if run.process.poll() is not None:
        return ("exited", run.process.returncode)
    try:
        response = httpx.get(f"{run.base_url}/api/health", timeout=5)
    except httpx.TransportError:
        return None
    if response.status_code != 200:
        return None
    return ("ok", response.json())


def test_make_run_serves_health_then_ctrl_c_stops_every_server(make_run: MakeRun) -> None:
    assert make_run.process is not None

    outcome = wait_until(
        lambda: health_or_exit(make_run),
        timeout=HEALTH_TIMEOUT_S,
        interval=0.25,
        message=f"GET /api/health = 200 from `make run`:\n{make_run.log_path}",
    )
    assert outcome is not None  # wait_until returns a truthy value or raises
    assert outcome[0] == "ok", f"make run exited with {outcome[1]}:\n{make_run.output()[-4000:]}"
    checks = outcome[1]["checks"]
    assert outcome[1]["status"] in ("ok", "degraded"), outcome[1]
    assert {k: checks[k] for k in ("runtime", "settings", "storage", "durable")} == dict.fromkeys(
        ("runtime", "settings", "storage", "durable"), "ok"
    ), checks

    servers = make_run.descendants()
    cmdlines = [" ".join(proc.cmdline()) for proc in servers]
    for name in ("azurite", "maildev", "-m selfhost"):
        assert any(name in line for line in cmdlines), f"no {name} process among {cmdlines}"
    keys = json.loads((make_run.state_dir / "runtime" / "keys.json").read_text())
    assert keys["functionKeys"]["default"]
    assert f"{make_run.base_url}/api/health" in make_run.output()

    os.killpg(make_run.process.pid, signal.SIGINT)  # Ctrl-C in the terminal
    make_run.process.wait(timeout=60)

    _, alive = psutil.wait_procs(servers, timeout=15)
    assert alive == [], f"still running after Ctrl-C: {alive}\n{make_run.output()[-4000:]}"
    output = make_run.output()
    # In this order: the runtime finishes before its storage goes; Azurite flushes on SIGTERM.
    stopped = [
        output.find(f"devservers: {name} stopped (exit code") for name in ("runtime", "Azurite", "maildev")
    ]
    assert -1 not in stopped and stopped == sorted(stopped), output[-4000:]
    assert "devservers: all servers stopped" in output
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{make_run.base_url}/admin/host/ping", timeout=2)
