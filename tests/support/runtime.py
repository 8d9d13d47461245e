"""Run the self-hosted runtime as a real child process (`python -m selfhost`) for tests.

Crash tests SIGKILL it and start it again on the same state folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[2]


class RuntimeProcess:
    def __init__(
        self,
        app_root: Path,
        state_dir: Path,
        env: dict[str, str] | None = None,
        port: int | None = None,
    ) -> None:
        self.app_root = app_root
        self.state_dir = state_dir
        self.port = port or free_port()
        self.env = env or {}
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = state_dir.parent / f"{state_dir.name}-runtime.log"
        self._log_file: Any = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base_url + "/" + path.lstrip("/")

    def start(self, wait: bool = True, timeout: float = 60.0) -> RuntimeProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env.update(self.env)
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop/kill
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "selfhost",
                "--app-root",
                str(self.app_root),
                "--state-dir",
                str(self.state_dir),
                "--port",
                str(self.port),
            ],
            cwd=str(self.app_root),
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: float = 60.0) -> None:
        exited: list[int] = []

        def ready() -> bool:
            if self.process is not None and self.process.poll() is not None:
                exited.append(self.process.returncode)
                return True  # stop waiting; reported below
            return httpx.get(self.url("admin/host/ping"), timeout=1).status_code == 200

        wait_until(ready, timeout=timeout, message=f"runtime ready on {self.port}\n{self.log_text()[-2000:]}")
        if exited:
            raise AssertionError(f"runtime exited with {exited[0]}:\n{self.log_text()[-4000:]}")

    def keys(self) -> dict[str, Any]:
        return dict(json.loads((self.state_dir / "keys.json").read_text()))

    @property
    def master_key(self) -> str:
        return str(self.keys()["master"])

    @property
    def function_key(self) -> str:
        return str(self.keys()["functionKeys"]["default"])

    def kill(self) -> None:
        """SIGKILL: the crash the runtime must survive."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self._close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self._close()

    def _close(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
