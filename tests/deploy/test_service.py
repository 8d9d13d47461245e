"""The systemd unit of the one-machine service (deploy/systemd, scripts/service.py): what it
runs, how it stops and restarts, where its state and logs go; `install` with a stand-in systemctl."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts import devservers, service
from scripts.service import Scope, render

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = dict(service.DEFAULT_PORTS)


def directives(text: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line and not line.startswith("#"))


def test_the_user_unit_runs_make_runs_servers_from_this_checkout(tmp_path: Path) -> None:
    unit = render(Scope("user"), state_dir=tmp_path / "state", env_file=tmp_path / "env", ports=DEFAULTS)
    d = directives(unit)

    assert (
        d["ExecStart"]
        == f"{ROOT}/.venv/bin/python -m scripts.devservers run --state-dir {tmp_path / 'state'}"
    )
    assert d["WorkingDirectory"] == str(ROOT)
    assert d["EnvironmentFile"] == f"-{tmp_path / 'env'}"
    assert d["WantedBy"] == "default.target"
    assert "User" not in d and not re.search(r"@[A-Z_]+@", unit)


def test_it_restarts_on_failure_logs_to_the_journal_and_drains_on_sigterm(tmp_path: Path) -> None:
    d = directives(render(Scope("user"), state_dir=tmp_path, env_file=tmp_path / "env", ports=DEFAULTS))

    assert d["Restart"] == "on-failure"
    assert d["StandardOutput"] == d["StandardError"] == "journal"
    assert (d["KillSignal"], d["KillMode"]) == (
        "SIGTERM",
        "mixed",
    )  # SIGTERM to devservers, which stops the rest
    # Room for every server's own grace (runtime, then Azurite, then maildev) before SIGKILL.
    assert int(d["TimeoutStopSec"]) > sum(devservers.STOP_GRACE_S.values())


def test_the_system_unit_runs_as_the_given_account_with_its_state_directory() -> None:
    unit = render(Scope("system"), state_dir=Path("/var/lib/bulk-export"), env_file=Path("/etc/bulk-export/env"),
                  ports=DEFAULTS, user="lab")  # fmt: skip
    d = directives(unit)

    assert (d["User"], d["StateDirectory"], d["WantedBy"]) == ("lab", "bulk-export", "multi-user.target")


def test_ports_other_than_the_defaults_are_passed_on(tmp_path: Path) -> None:
    ports = {**DEFAULTS, "runtime-port": 7072, "azurite-blob-port": 20000}
    d = directives(render(Scope("user"), state_dir=tmp_path, env_file=tmp_path / "env", ports=ports))

    assert d["ExecStart"].endswith("--runtime-port 7072 --azurite-blob-port 20000")


def test_systemd_accepts_the_unit(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed")
    path = tmp_path / service.UNIT
    path.write_text(render(Scope("system"), state_dir=Path("/var/lib/bulk-export"), env_file=tmp_path / "env",
                           ports=DEFAULTS, user="root"))  # fmt: skip

    result = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)

    complaints = [line for line in result.stderr.splitlines() if service.UNIT in line]
    assert result.returncode == 0 and complaints == [], result.stderr


def test_install_writes_the_unit_and_the_env_file_and_enables_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    (bin_dir / "systemctl").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "systemctl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))

    assert service.main(["install"]) == 0

    unit = (tmp_path / "config" / "systemd" / "user" / service.UNIT).read_text()
    assert f"--state-dir {tmp_path / 'state' / 'bulk-export'}" in unit
    env_file = tmp_path / "config" / "bulk-export" / "env"
    assert env_file.stat().st_mode & 0o777 == 0o600
    assert calls.read_text().splitlines() == ["--user daemon-reload", f"--user enable --now {service.UNIT}"]
    assert service.main(["stop"]) == 0 and calls.read_text().splitlines()[-1] == f"--user stop {service.UNIT}"
    assert re.search(r"ExecStart=\S+/\.venv/bin/python -m scripts\.devservers run", unit)
