"""`LocalSecretStore`: secrets as files in one folder, for the self-hosted runtime.

One file per secret, named after it (names are letters, digits and dashes, so they cannot
escape the folder), mode 0600 in a 0700 folder. Writes go to a temporary file that is fsynced
and renamed over the target, so a crash leaves the old value or the new one, never half of one.
Deletion is immediate: there is no soft delete here, but names stay unique per job anyway so
that behaviour matches Key Vault.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from shared.errors import PermanentError, TransientError
from shared.secrets.base import MAX_SECRET_VALUE_LENGTH, SecretNotFoundError, check_secret_name

__all__ = ["LocalSecretStore"]

log = logging.getLogger(__name__)


class LocalSecretStore:
    """File-backed `SecretStore`. Safe for several threads and processes on one machine."""

    def __init__(self, folder: Path) -> None:
        self._folder = Path(folder)

    @property
    def folder(self) -> Path:
        return self._folder

    def set(self, name: str, value: str) -> None:
        path = self._path(name)
        if len(value) > MAX_SECRET_VALUE_LENGTH:
            raise PermanentError(f"secret {name!r} is longer than {MAX_SECRET_VALUE_LENGTH} characters")
        with _os_errors("store", name):
            self._folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # mkstemp creates the file 0600 in the target folder, so the rename is atomic.
            fd, tmp = tempfile.mkstemp(dir=self._folder, prefix=".tmp-", suffix=".secret")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(value)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
                raise
            _fsync_dir(self._folder)
        log.info("stored secret %s", name)

    def get(self, name: str) -> str:
        path = self._path(name)
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SecretNotFoundError(name) from None
        except OSError as exc:
            raise _translate(exc, "read", name) from exc

    def delete(self, name: str) -> None:
        path = self._path(name)
        with _os_errors("delete", name):
            path.unlink(missing_ok=True)
        log.info("deleted secret %s", name)

    def _path(self, name: str) -> Path:
        return self._folder / check_secret_name("secret_name", name)


@contextlib.contextmanager
def _os_errors(action: str, name: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise _translate(exc, action, name) from exc


def _translate(exc: OSError, action: str, name: str) -> PermanentError | TransientError:
    # Permissions and a path that is not a folder will not fix themselves; a full disk or an
    # interrupted call might.
    if isinstance(exc, PermissionError | NotADirectoryError | IsADirectoryError):
        return PermanentError(f"cannot {action} secret {name!r}: {type(exc).__name__}")
    return TransientError(f"cannot {action} secret {name!r}: {type(exc).__name__}")


def _fsync_dir(folder: Path) -> None:
    """Make the rename itself durable (POSIX); not available on every platform."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        log.debug("fsync of folder %s not supported", folder)
    finally:
        os.close(fd)
