"""The live host keys: what every request is checked against, changed without a restart.

`KeyStore` holds the current `HostKeys` snapshot. The admin API's function-key operations
(`put_function_key`, `delete_function_key`) replace it and rewrite keys.json (mode 0600) before
they return. A change made to keys.json by hand is picked up by the next request: `current`
compares the file's stat with the last one it saw (one `stat` call per read). A hand edit that
leaves the file unusable is logged and ignored, so the keys in use stay and nobody is locked
out by a typo. A store made without a path (tests) keeps its changes in memory only.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from pathlib import Path

from selfhost.keys import (
    DEFAULT_FUNCTION_KEY,
    KEYS_FILE,
    HostKeys,
    KeysError,
    key_name_problem,
    key_value_problem,
    keys_from_json,
    load_or_create_keys,
    new_key,
    read_keys_file,
    write_keys,
)

__all__ = ["InvalidKeyChange", "KeyConflict", "KeyStore"]

log = logging.getLogger(__name__)

_Signature = tuple[int, int, int] | None


class InvalidKeyChange(ValueError):
    """A function-key change the runtime refuses (a bad name or value); `field` names which."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


class KeyConflict(ValueError):
    """The value is already used by another key (a key must identify exactly one caller)."""


def _signature(path: Path) -> _Signature:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


class KeyStore:
    def __init__(self, keys: HostKeys, path: Path | None = None) -> None:
        self._keys = keys
        self._path = path
        self._lock = threading.Lock()
        self._seen: _Signature = _signature(path) if path is not None else None

    @classmethod
    def open(cls, state_dir: Path) -> KeyStore:
        """Load (or create) `<state_dir>/keys.json`; KeysError when it is unusable."""
        return cls(load_or_create_keys(state_dir), state_dir / KEYS_FILE)

    @property
    def current(self) -> HostKeys:
        if self._path is None:
            return self._keys
        with self._lock:
            self._reload_if_changed(self._path)
            return self._keys

    def put_function_key(self, name: str, value: str | None) -> tuple[bool, str]:
        """Set (value given) or generate (None) the function key `name`: (created, value)."""
        problem = key_name_problem(name)
        if problem is not None:
            raise InvalidKeyChange(problem, "name")
        if value is None:
            value = new_key()
        else:
            problem = key_value_problem(value)
            if problem is not None:
                raise InvalidKeyChange(problem, "value")
        with self._lock:
            if self._path is not None:
                self._reload_if_changed(self._path)
            keys = self._keys
            if keys.value_in_use(value, except_function_key=name):
                raise KeyConflict("another key already has this value")
            created = name not in keys.function_keys
            self._save(dataclasses.replace(keys, function_keys={**keys.function_keys, name: value}))
        return created, value

    def delete_function_key(self, name: str) -> bool:
        """Remove the function key `name`; False when there is none."""
        if name == DEFAULT_FUNCTION_KEY:
            raise InvalidKeyChange(
                "the default key cannot be deleted (PUT a new value or POST to generate one)", "name"
            )
        with self._lock:
            if self._path is not None:
                self._reload_if_changed(self._path)
            keys = self._keys
            if name not in keys.function_keys:
                return False
            remaining = {n: v for n, v in keys.function_keys.items() if n != name}
            self._save(dataclasses.replace(keys, function_keys=remaining))
        return True

    # -- under the lock --------------------------------------------------------------------

    def _save(self, keys: HostKeys) -> None:
        if self._path is not None:
            write_keys(self._path, keys)
            self._seen = _signature(self._path)
        self._keys = keys

    def _reload_if_changed(self, path: Path) -> None:
        seen = _signature(path)
        if seen == self._seen:
            return
        self._seen = seen
        if seen is None:
            log.warning("%s is gone; the keys in use stay and are written back on the next key change", path)
            return
        try:
            keys = keys_from_json(read_keys_file(path), path, fallback=self._keys)
        except KeysError as exc:
            log.warning("Ignoring the changed keys file: %s. The keys in use stay.", exc)
            return
        if keys != self._keys:
            log.info("Host keys reloaded from %s", path)
        self._keys = keys
