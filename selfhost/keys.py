"""Host keys: the master key, named function keys ("default" and any others) and system keys.

Generated with `secrets.token_urlsafe` on first start and stored in `<state_dir>/keys.json`
(mode 0600) as {"master": ..., "functionKeys": {"default": ..., <name>: ...}, "systemKeys":
{"durabletask_extension": ...}}, so a restart keeps every URL and key a user copied. Users add
named function keys there or through the admin API (`selfhost.keystore`, which also reloads the
file when it changes). Tests read this file (tests/support/runtime.py), so its shape is a
contract. `HostKeys.identify` says which key a request presented, in constant time.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "DEFAULT_FUNCTION_KEY",
    "DURABLE_SYSTEM_KEY",
    "HostKeys",
    "KeyMatch",
    "KeysError",
    "key_name_problem",
    "key_value_problem",
    "keys_from_json",
    "load_or_create_keys",
    "new_key",
    "read_keys_file",
    "write_keys",
]

KEYS_FILE = "keys.json"
DEFAULT_FUNCTION_KEY = "default"
DURABLE_SYSTEM_KEY = "durabletask_extension"
# A key name becomes a caller identity (selfhost.http.principal), so it must be header-safe and
# still allow e-mail addresses.
_KEY_NAME = re.compile(r"[A-Za-z0-9@._-]{1,128}")
# "admin" is the identity of the master key; "master"/"_master" are the host's names for it.
_RESERVED_NAMES = frozenset({"admin", "master", "_master"})
# Values travel in headers and `code=` query parameters: URL- and header-safe ASCII only.
_KEY_VALUE = re.compile(r"[A-Za-z0-9._~+/=-]+")
MIN_KEY_VALUE_LENGTH = 16
MAX_KEY_VALUE_LENGTH = 256

KeyKind = Literal["master", "function", "system"]


class KeysError(Exception):
    """keys.json exists but cannot be used; the message names the file."""


def new_key() -> str:
    return secrets.token_urlsafe(32)


def key_name_problem(name: str) -> str | None:
    """Why `name` cannot name a function key, or None when it can."""
    if not _KEY_NAME.fullmatch(name):
        return "a key name is 1 to 128 letters, digits and '@', '.', '_', '-'"
    if name.casefold() in _RESERVED_NAMES:
        return f"the key name '{name}' is reserved"
    return None


def key_value_problem(value: str) -> str | None:
    """Why `value` cannot be a key set through the admin API, or None when it can."""
    if not MIN_KEY_VALUE_LENGTH <= len(value) <= MAX_KEY_VALUE_LENGTH or not _KEY_VALUE.fullmatch(value):
        return (
            f"a key value is {MIN_KEY_VALUE_LENGTH} to {MAX_KEY_VALUE_LENGTH} letters, digits "
            "and '-', '.', '_', '~', '+', '/', '='"
        )
    return None


def _as_bytes(text: str) -> bytes:
    # Header values may hold undecodable bytes as lone surrogates (aiohttp's surrogateescape);
    # "surrogatepass" encodes any str, and such bytes never equal an ASCII key.
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True)
class KeyMatch:
    """The key a request presented: its kind and its name ("master" for the master key)."""

    kind: KeyKind
    name: str


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

    def identify(self, candidate: str | None) -> KeyMatch | None:
        """Which key `candidate` is, in the host's lookup order (master, system, function keys).

        Every key is compared (no short-circuit), so the time taken does not reveal which key
        matched or how many characters did."""
        if not candidate:
            return None
        given = _as_bytes(candidate)
        entries: list[tuple[KeyKind, str, str]] = [("master", "master", self.master)]
        entries += [("system", name, value) for name, value in self.system_keys.items()]
        entries += [("function", name, value) for name, value in self.function_keys.items()]
        found: KeyMatch | None = None
        for kind, name, value in entries:
            if hmac.compare_digest(given, _as_bytes(value)) and found is None:
                found = KeyMatch(kind, name)
        return found

    def is_master(self, key: str | None) -> bool:
        match = self.identify(key)
        return match is not None and match.kind == "master"

    def is_function_key(self, key: str | None) -> bool:
        match = self.identify(key)
        return match is not None and match.kind == "function"

    def is_system_key(self, key: str | None, name: str) -> bool:
        match = self.identify(key)
        return match is not None and match.kind == "system" and match.name == name

    def value_in_use(self, value: str, *, except_function_key: str | None = None) -> bool:
        """Whether another key already has `value` (two keys with one value are ambiguous)."""
        others = [self.master, *self.system_keys.values()]
        others += [v for n, v in self.function_keys.items() if n != except_function_key]
        return any([hmac.compare_digest(_as_bytes(value), _as_bytes(v)) for v in others])

    def to_json(self) -> dict[str, Any]:
        return {
            "master": self.master,
            "functionKeys": dict(self.function_keys),
            "systemKeys": dict(self.system_keys),
        }


def _string_map(data: Mapping[str, Any], field: str, path: Path) -> dict[str, str]:
    raw = data.get(field) or {}
    if not isinstance(raw, dict):
        raise KeysError(f"{path}: {field} must be an object of key names to key values")
    for name, value in raw.items():
        if not isinstance(value, str) or not value:
            raise KeysError(f"{path}: {field}.{name} must be a non-empty string")
    return dict(raw)


def keys_from_json(data: Any, path: Path, fallback: HostKeys | None = None) -> HostKeys:
    """Validated keys from the parsed file; a missing master, default or durable key is taken
    from `fallback` (the keys in use) or else generated."""
    if not isinstance(data, dict):
        raise KeysError(f"{path} must hold a JSON object; delete it to generate new keys")
    function_keys = _string_map(data, "functionKeys", path)
    for name in function_keys:
        problem = key_name_problem(name)
        if problem is not None:
            raise KeysError(f"{path}: functionKeys has a bad key name {name!r}: {problem}")
    system_keys = _string_map(data, "systemKeys", path)
    master = data.get("master")
    if master is not None and (not isinstance(master, str) or not master):
        raise KeysError(f"{path}: master must be a non-empty string")
    return HostKeys(
        master=master or (fallback.master if fallback else new_key()),
        function_keys={
            **function_keys,
            DEFAULT_FUNCTION_KEY: function_keys.get(DEFAULT_FUNCTION_KEY)
            or (fallback.default_function_key if fallback else new_key()),
        },
        system_keys={
            **system_keys,
            DURABLE_SYSTEM_KEY: system_keys.get(DURABLE_SYSTEM_KEY)
            or (fallback.durable_key if fallback else new_key()),
        },
    )


def read_keys_file(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise KeysError(f"{path} is unreadable ({exc}); delete it to generate new keys") from exc


def load_or_create_keys(state_dir: Path) -> HostKeys:
    """Read keys.json, adding any missing key (and creating the file on first start)."""
    path = state_dir / KEYS_FILE
    data: Any = read_keys_file(path) if path.exists() else {}
    keys = keys_from_json(data, path)
    if keys.to_json() != data:
        write_keys(path, keys)
    else:
        os.chmod(path, 0o600)
    return keys


def write_keys(path: Path, keys: HostKeys) -> None:
    _write_private(path, json.dumps(keys.to_json(), indent=2) + "\n")


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
