"""One runtime per state folder: an exclusive `fcntl.flock` on `<state_dir>/runtime.lock`.

Two runtimes on one folder would both run the durable store's dispatch loops and double-fire
timers. The kernel drops a flock when its process dies, even by SIGKILL, so a crash never
leaves a stale lock behind; the pid written into the file is only for the error message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

__all__ = ["StateLock", "StateLockedError"]

LOCK_FILE = "runtime.lock"


class StateLockedError(Exception):
    """Another live process holds the lock; `pid` is its pid when it could be read."""

    def __init__(self, state_dir: Path, pid: int | None) -> None:
        self.state_dir, self.pid = state_dir, pid
        who = f"pid {pid}" if pid is not None else "pid unknown"
        super().__init__(f"another runtime is already using state folder {state_dir} ({who})")


class StateLock:
    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self.path = state_dir / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock without waiting; raise StateLockedError if another process holds it."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = _read_pid(fd)
            os.close(fd)
            raise StateLockedError(self.state_dir, pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> StateLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    try:
        text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
