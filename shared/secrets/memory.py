"""`MemorySecretStore`: the secret store's in-memory twin, for fast tests of what reads and writes
secrets (the cursor seal, SMART signing keys). It also counts reads, so a test can check a
cache: `reads` is how many `get` calls reached it."""

from __future__ import annotations

import threading

from shared.secrets.base import SecretNotFoundError

__all__ = ["MemorySecretStore"]


class MemorySecretStore:
    """Implements `SecretStore` in a dict; safe to share between threads."""

    def __init__(self) -> None:
        self.values: dict[str, str] = {}
        self.reads = 0
        self._lock = threading.Lock()

    def set(self, name: str, value: str) -> None:
        with self._lock:
            self.values[name] = value

    def get(self, name: str) -> str:
        with self._lock:
            self.reads += 1
            if name not in self.values:
                raise SecretNotFoundError(name)
            return self.values[name]

    def delete(self, name: str) -> None:
        with self._lock:
            self.values.pop(name, None)
