"""`LocalItemSource`: files under one configured local root folder (the single-machine workstation).

An item is a path relative to the root with `/` separators (`reports/2024/q1.csv`). Refused with
ValidationError: absolute paths, drive letters, backslashes, empty, `.` and `..` segments, a path
whose symbolic links lead outside the root, and anything but a regular file (a folder, a pipe, a
device). Symbolic links that stay inside the root are followed.

The path is resolved, checked, then opened without following a last link (O_NOFOLLOW) and without
blocking (O_NONBLOCK: a pipe swapped in would block a read forever); the open file is checked
again (a regular file, and on Linux its real path under the root), so swapping a link between the
check and the open gains nothing. `list` is the file picker's view, bounded to `max_entries`.
"""

from __future__ import annotations

import builtins
import io
import logging
import mimetypes
import os
import stat as st
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PureWindowsPath
from typing import Final

from shared.errors import PermanentError, TransientError, ValidationError
from shared.items.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    UNKNOWN_SIZE,
    ItemInfo,
    ItemKind,
    check_common,
)

__all__ = ["FOLDER_CONTENT_TYPE", "MAX_LIST_ENTRIES", "LocalItemSource"]

log = logging.getLogger(__name__)

_KIND: Final[ItemKind] = "local"
MAX_LIST_ENTRIES: Final = 10_000
# Folders in a listing: names end with "/", the content type is the one file managers use.
FOLDER_CONTENT_TYPE: Final = "inode/directory"
_OPEN_FLAGS: Final = (
    os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
)


def _version(info: os.stat_result) -> str:
    return f"{info.st_mtime_ns}-{info.st_size}"


def _content_type(name: str) -> str:
    return mimetypes.guess_type(name, strict=False)[0] or DEFAULT_CONTENT_TYPE


def _check_relative(path: str, field: str) -> None:
    if "\\" in path:
        raise ValidationError(field, "use '/' as the separator, not '\\'")
    if path.startswith("/") or PureWindowsPath(path).drive:
        raise ValidationError(field, "must be a path relative to the local root, not an absolute path")
    if any(part in ("", ".", "..") for part in path.split("/")):
        raise ValidationError(field, "must not contain empty, '.' or '..' segments")


class LocalItemSource:
    """Regular files under `root`. Implements `ItemSource`, plus `list` for a file picker."""

    kind: Final[ItemKind] = _KIND

    def __init__(
        self,
        root: str | os.PathLike[str],
        *,
        chunk_size: int = CHUNK_SIZE,
        max_entries: int = MAX_LIST_ENTRIES,
    ) -> None:
        try:
            self._root = Path(root).resolve(strict=True)
        except OSError:
            raise PermanentError(f"the local root {os.fspath(root)!r} does not exist") from None
        if not self._root.is_dir():
            raise PermanentError(f"the local root {os.fspath(root)!r} is not a folder")
        self._chunk_size = chunk_size
        self._max_entries = max_entries

    @property
    def root(self) -> Path:
        return self._root

    def check(self, item: str) -> None:
        check_common(item)
        _check_relative(item, "item")

    def stat(self, item: str) -> ItemInfo:
        path = self._resolve(item)
        try:
            info = os.stat(path)
        except OSError as exc:
            raise self._os_error(item, exc) from None
        self._check_regular(item, info)
        return ItemInfo(
            name=item, size=info.st_size, content_type=_content_type(item), version=_version(info)
        )

    @contextmanager
    def open(self, item: str, *, offset: int = 0, version: str | None = None) -> Iterator[Iterator[bytes]]:
        if offset < 0:
            raise ValueError("offset must not be negative")
        path = self._resolve(item)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise self._os_error(item, exc) from None
        try:
            info = os.fstat(fd)
            self._check_regular(item, info)
            self._check_inside(item, fd)
            if version and _version(info) != version:
                raise TransientError(
                    f"read {item}: it changed since it was listed; a retry reads the new version"
                )
            file = os.fdopen(fd, "rb", buffering=0)
        except BaseException:
            os.close(fd)
            raise
        with file:
            file.seek(offset)
            yield self._chunks(file, item, version)

    def list(self, prefix: str = "", recursive: bool = False) -> list[ItemInfo]:
        """Files (and, when not recursive, folders: names ending with "/", size -1) whose names
        start with `prefix`, sorted by name. `prefix` is a folder (`""`, `reports/`) optionally
        followed by the start of a name (`reports/2024-`). Symbolic links are listed when they
        lead to a regular file inside the root; linked folders are not entered (no loops).
        More than `max_entries` entries: ValidationError (narrow the prefix), never a silent cut."""
        if prefix:
            check_common(prefix)
            _check_relative(prefix[:-1] if prefix.endswith("/") else prefix, "prefix")
        folder, _, start = prefix.rpartition("/")
        try:
            base = (self._root / folder).resolve(strict=True)
        except OSError:
            raise ValidationError("prefix", f"no such folder {folder!r}") from None
        if not base.is_relative_to(self._root) or not base.is_dir():
            raise ValidationError("prefix", f"{folder!r} is not a folder under the local root")
        entries: list[ItemInfo] = []
        pending = [(base, folder)]
        while pending:
            directory, name = pending.pop()
            for entry in self._scan(directory):
                if not entry.name.startswith(start if directory == base else ""):
                    continue
                relative = f"{name}/{entry.name}" if name else entry.name
                found = self._entry(entry, relative, recursive, pending)
                if found is not None:
                    entries.append(found)
                    if len(entries) > self._max_entries:
                        raise ValidationError(
                            "prefix", f"more than {self._max_entries} entries; choose a narrower prefix"
                        )
        return sorted(entries, key=lambda e: e.name)

    def _entry(
        self,
        entry: os.DirEntry[str],
        relative: str,
        recursive: bool,
        pending: builtins.list[tuple[Path, str]],
    ) -> ItemInfo | None:
        try:
            check_common(relative)
            _check_relative(relative, "item")
        except ValidationError:
            return None  # a name no batch could submit (a backslash, a control character)
        try:
            if entry.is_symlink():
                target = Path(entry.path).resolve(strict=True)
                if not target.is_relative_to(self._root) or not target.is_file():
                    return None
                info = os.stat(target)
            elif entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append((Path(entry.path), relative))
                    return None
                return ItemInfo(
                    name=f"{relative}/", size=UNKNOWN_SIZE, content_type=FOLDER_CONTENT_TYPE, version=""
                )
            elif entry.is_file(follow_symlinks=False):
                info = entry.stat(follow_symlinks=False)
            else:
                return None  # pipes, sockets, devices: never items
        except OSError as exc:
            log.warning("local listing skips %s: %s", relative, type(exc).__name__)
            return None
        return ItemInfo(
            name=relative, size=info.st_size, content_type=_content_type(relative), version=_version(info)
        )

    def _scan(self, directory: Path) -> builtins.list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as scan:
                return list(scan)
        except OSError as exc:
            log.warning("local listing skips folder %s: %s", directory, type(exc).__name__)
            return []

    def _resolve(self, item: str) -> Path:
        self.check(item)
        try:
            path = (self._root / item).resolve(strict=True)
        except FileNotFoundError:
            raise PermanentError(f"no such file {item!r} under the local root") from None
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symbolic link loop (Python < 3.13)
            raise ValidationError("item", f"cannot be resolved ({type(exc).__name__})") from None
        if not path.is_relative_to(self._root):
            raise ValidationError("item", "leads outside the local root (a symbolic link)")
        return path

    def _check_regular(self, item: str, info: os.stat_result) -> None:
        if st.S_ISDIR(info.st_mode):
            raise ValidationError("item", "is a folder, not a file")
        if not st.S_ISREG(info.st_mode):
            raise ValidationError("item", "is not a regular file (a pipe, socket or device)")

    def _check_inside(self, item: str, fd: int) -> None:
        # Linux names the file an fd is open on; elsewhere the checks before the open stand alone.
        try:
            real = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return
        if not real.is_relative_to(self._root):
            raise ValidationError("item", "leads outside the local root (a symbolic link)")

    def _os_error(self, item: str, exc: OSError) -> PermanentError:
        if isinstance(exc, FileNotFoundError):
            return PermanentError(f"no such file {item!r} under the local root")
        if isinstance(exc, PermissionError):
            return PermanentError(f"{item!r} under the local root is not readable (permission denied)")
        if getattr(exc, "errno", None) == getattr(os, "ELOOP", -1):
            # O_NOFOLLOW met a link at the last step: it was swapped in after the check.
            return ValidationError("item", "leads outside the local root (a symbolic link)")
        return PermanentError(f"read {item!r} under the local root: {type(exc).__name__}")

    def _chunks(self, file: io.FileIO, item: str, version: str | None) -> Iterator[bytes]:
        while True:
            try:
                data = file.read(self._chunk_size)
            except OSError as exc:
                raise TransientError(f"read {item}: {type(exc).__name__}") from exc
            if not data:
                break
            yield data
        if version and _version(os.fstat(file.fileno())) != version:
            raise TransientError(f"read {item}: it changed while being read; a retry reads the new version")
