"""Sealed cursors: a `next` link that carries a credential is kept encrypted wherever it is stored.

Some FHIR servers put a token in their `next` links (`...?_getpages=...&token=...`). A cursor is
kept in durable history, in the orchestration's input and in the job record's checkpoint, which
operators, tools and the management API read; a token must not be readable there (issue 11).
`CursorSeal.seal` encrypts such a cursor (AES-256-GCM) under one service-wide key kept in the
secret store, and `unseal` decrypts it just before the page is read. The key is created on first
use, like the SMART signing key, and never deleted, so an operator retry of a failed job still
resumes from its checkpoint. Cursors without credentials (those `redact_url` leaves as they are)
stay plain, so the common case never touches the secret store and checkpoints stay legible; plain
cursors are accepted by `unseal` as they are (jobs checkpointed before sealing existed).

    sealed:1:<key id>:<base64url(nonce + ciphertext), unpadded>

The key id (8 hex digits of a digest of the key) names the key a cursor was sealed with. Each key
is kept twice: as `cursor-sealing-key-<key id>`, written first and never replaced, and as
`cursor-sealing-key`, the key new cursors are sealed with. When two instances race on first use,
the second write replaces the current key, but a cursor sealed with the first still opens
anywhere through its id. Never puts a cursor or the key into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import PermanentError, SourceDataError
from shared.secrets.base import SecretNotFoundError, SecretStore
from shared.sources._http import redact_url

__all__ = ["MAX_SEALED_LENGTH", "PREFIX", "SEALING_KEY_SECRET", "CursorSeal", "key_secret", "needs_sealing"]

SEALING_KEY_SECRET: Final = "cursor-sealing-key"  # one name: every instance shares the key
PREFIX: Final = "sealed:1:"
# The checkpoint's cursor field holds at most this much (`shared.progress.Cursor`).
MAX_SEALED_LENGTH: Final = 16_384
_NONCE_BYTES: Final = 12
_AAD: Final = b"bulk-export cursor v1"
_KID: Final = re.compile(r"[0-9a-f]{8}")


def needs_sealing(cursor: str) -> bool:
    """True when the cursor holds what an error message would never show (a credential-like
    query value, user-info)."""
    return redact_url(cursor) != cursor


@dataclass(frozen=True)
class _Key:
    aead: AESGCM
    kid: str


def key_secret(kid: str) -> str:
    """The name under which the key with id `kid` is kept for good."""
    return f"{SEALING_KEY_SECRET}-{kid}"


def _key_from(value: str) -> _Key:
    raw = hashlib.sha256(value.encode()).digest()  # any secret text -> 32 key bytes
    kid = hashlib.sha256(b"cursor key id:" + raw).hexdigest()[:8]
    return _Key(AESGCM(raw), kid)


class CursorSeal:
    """Seals and opens cursors; one per process (it caches the keys). `store` is called only when
    a cursor needs a key, so sources without credentials in their links never reach it."""

    def __init__(self, store: Callable[[], SecretStore]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._current: _Key | None = None  # what this process seals with
        self._keys: dict[str, _Key] = {}  # every key it has opened with, by id

    def seal(self, cursor: str | None) -> str | None:
        if cursor is None or not needs_sealing(cursor):
            return cursor
        key = self._sealing_key()
        nonce = os.urandom(_NONCE_BYTES)
        data = nonce + key.aead.encrypt(nonce, cursor.encode(), _AAD)
        body = base64.urlsafe_b64encode(data).rstrip(b"=").decode()
        sealed = f"{PREFIX}{key.kid}:{body}"
        if len(sealed) > MAX_SEALED_LENGTH:
            raise SourceDataError(
                f"the server's next link is too long to keep in a checkpoint ({len(cursor)} characters)"
            )
        return sealed

    def unseal(self, cursor: str | None) -> str | None:
        if cursor is None or not cursor.startswith(PREFIX):
            return cursor
        kid, _, body = cursor.removeprefix(PREFIX).partition(":")
        if not _KID.fullmatch(kid):
            raise PermanentError("the checkpoint's cursor is damaged: it does not decrypt")
        key = self._key(kid)
        try:
            # Strict: the lenient decoder would ignore characters, so a damaged text could open.
            data = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            return key.aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], _AAD).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise PermanentError("the checkpoint's cursor is damaged: it does not decrypt") from None

    def _sealing_key(self) -> _Key:
        # One lock around the whole read-or-create: the activities of one process run in
        # threads, and two first uses racing would each create a key of their own.
        with self._lock:
            if self._current is None:
                store = self._store()
                try:
                    key = _key_from(store.get(SEALING_KEY_SECRET))
                except SecretNotFoundError:
                    value = secrets.token_urlsafe(32)
                    key = _key_from(value)
                    # Kept under its id first: another instance racing on first use may replace
                    # the current key, and cursors sealed with this one must still open.
                    store.set(key_secret(key.kid), value)
                    store.set(SEALING_KEY_SECRET, value)
                self._current = self._keys[key.kid] = key
            return self._current

    def _key(self, kid: str) -> _Key:
        """The key with id `kid`: the current one, else the one kept under its id."""
        with self._lock:
            if kid in self._keys:
                return self._keys[kid]
            store = self._store()
            try:
                current = _key_from(store.get(SEALING_KEY_SECRET))
            except SecretNotFoundError:
                raise PermanentError(
                    f"the checkpoint's cursor is sealed, but the secret store holds no key "
                    f"(secret {SEALING_KEY_SECRET!r}); the type must be exported again"
                ) from None
            self._keys[current.kid] = current
            if current.kid != kid:
                try:
                    self._keys[kid] = _key_from(store.get(key_secret(kid)))
                except SecretNotFoundError:
                    raise PermanentError(
                        f"the checkpoint's cursor was sealed with a key the secret store no longer "
                        f"holds (secret {key_secret(kid)!r}); the type must be exported again"
                    ) from None
            return self._keys[kid]
