"""Host keys: the master key, the "default" function key and the "durabletask_extension" system key.

Generated with `secrets.token_urlsafe` on first start and stored in `<state_dir>/keys.json`
(mode 0600) as {"master": ..., "functionKeys": {"default": ...}, "systemKeys": {...}}, so a
restart keeps every URL and key a user copied. Tests read this file (tests/support/runtime.py),
so its shape is a contract. Comparisons are constant-time.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_FUNCTION_KEY",
    "DURABLE_SYSTEM_KEY",
    "HostKeys",
    "KeysError",
    "load_or_create_keys",
]

KEYS_FILE = "keys.json"
DEFAULT_FUNCTION_KEY = "default"
DURABLE_SYSTEM_KEY = "durabletask_extension"


class KeysError(Exception):
    """keys.json exists but cannot be used; the message names the file."""


def _new_key() -> str:
    return secrets.token_urlsafe(32)


def _matches(candidate: str | None, key: str) -> bool:
    return candidate is not None and hmac.compare_digest(candidate.encode(), key.encode())


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: Mapping[str, str]
    system_keys: Mapping[str, str]

    @property
    def default_function_key(self) -> str:
        return self.function_keys[DEFAULT_FUNCTION_KEY]

    @property
    def durable_key(self) -> str:
        return self.system_keys[DURABLE_SYSTEM_KEY]

    def is_master(self, key: str | None) -> bool:
        return _matches(key, self.master)

    def is_function_key(self, key: str | None) -> bool:
        # Evaluate every key (no short-circuit) so timing does not reveal which one matched.
        return any([_matches(key, k) for k in self.function_keys.values()])

    def is_system_key(self, key: str | None, name: str) -> bool:
        expected = self.system_keys.get(name)
        return expected is not None and _matches(key, expected)

    def to_json(self) -> dict[str, Any]:
        return {
            "master": self.master,
            "functionKeys": dict(self.function_keys),
            "systemKeys": dict(self.system_keys),
        }


def load_or_create_keys(state_dir: Path) -> HostKeys:
    """Read keys.json, adding any missing key (and creating the file on first start)."""
    path = state_dir / KEYS_FILE
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise KeysError(f"{path} is unreadable ({exc}); delete it to generate new keys") from exc
        if not isinstance(data, dict):
            raise KeysError(f"{path} must hold a JSON object; delete it to generate new keys")
    function_keys = dict(data.get("functionKeys") or {})
    system_keys = dict(data.get("systemKeys") or {})
    keys = HostKeys(
        master=str(data.get("master") or _new_key()),
        function_keys={
            **function_keys,
            DEFAULT_FUNCTION_KEY: function_keys.get(DEFAULT_FUNCTION_KEY) or _new_key(),
        },
        system_keys={**system_keys, DURABLE_SYSTEM_KEY: system_keys.get(DURABLE_SYSTEM_KEY) or _new_key()},
    )
    if keys.to_json() != data:
        _write_private(path, json.dumps(keys.to_json(), indent=2) + "\n")
    else:
        os.chmod(path, 0o600)
    return keys


def _write_private(path: Path, text: str) -> None:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o600)  # O_CREAT's mode does not apply when tmp already existed
    os.replace(tmp, path)
