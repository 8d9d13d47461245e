"""Start and stop Azurite (from the project's node_modules) on free loopback ports.

The command line and the connection string are the ones `make run` uses (scripts/devservers.py),
so the tests run Azurite exactly as the developer does, only on other ports.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scripts.devservers import (
    ACCOUNT,
    ACCOUNT_KEY,
    ROOT,
    Options,
    Ports,
    azurite_command,
    azurite_connection_string,
)
from tests.support.ports import free_port
from tests.support.waiting import wait_until

__all__ = ["ACCOUNT", "ACCOUNT_KEY", "AZURITE_BIN", "Azurite", "azurite_available", "start_azurite"]

AZURITE_BIN = Options(app_root=ROOT, state_dir=ROOT).node_bin / "azurite"


@dataclass
class Azurite:
    blob_port: int
    queue_port: int
    table_port: int
    location: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def ports(self) -> Ports:
        return Ports(blob=self.blob_port, queue=self.queue_port, table=self.table_port)

    @property
    def connection_string(self) -> str:
        return azurite_connection_string(self.ports)

    def start(self) -> Azurite:
        if not AZURITE_BIN.exists():
            raise RuntimeError(f"{AZURITE_BIN} is missing: run `make setup` (npm ci) first")
        # Data goes to `location`/azurite, as `make run` keeps it under its state folder.
        (self.location / "azurite").mkdir(parents=True, exist_ok=True)
        cmd = azurite_command(Options(app_root=ROOT, state_dir=self.location, ports=self.ports))
        self.process = subprocess.Popen(
            cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        for port in (self.blob_port, self.queue_port, self.table_port):
            wait_until(lambda p=port: _listening(p), timeout=30, message=f"azurite port {port}")
        return self

    def stop(self) -> None:
        """SIGTERM (Azurite flushes its metadata on SIGTERM; kill -9 loses ~5 s of writes)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def start_azurite(location: Path) -> Azurite:
    return Azurite(free_port(), free_port(), free_port(), location).start()


def azurite_available() -> bool:
    return AZURITE_BIN.exists() and shutil.which("node") is not None
