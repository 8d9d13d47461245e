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

The key id (8 hex digits of a digest of the key) tells a key replaced by a racing first use on
another instance: the key is read again once, and a cursor that still does not match fails the
page permanently with a message that says so. Never puts a cursor or the key into a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
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

__all__ = ["MAX_SEALED_LENGTH", "PREFIX", "SEALING_KEY_SECRET", "CursorSeal", "needs_sealing"]

SEALING_KEY_SECRET: Final = "cursor-sealing-key"  # one name: every instance shares the key
PREFIX: Final = "sealed:1:"
# The checkpoint's cursor field holds at most this much (`shared.progress.Cursor`).
MAX_SEALED_LENGTH: Final = 16_384
_NONCE_BYTES: Final = 12
_AAD: Final = b"bulk-export cursor v1"


def needs_sealing(cursor: str) -> bool:
    """True when the cursor holds what an error message would never show (a credential-like
    query value, user-info)."""
    return redact_url(cursor) != cursor


@dataclass(frozen=True)
class _Key:
    aead: AESGCM
    kid: str


def _key_from(value: str) -> _Key:
    raw = hashlib.sha256(value.encode()).digest()  # any secret text -> 32 key bytes
    kid = hashlib.sha256(b"cursor key id:" + raw).hexdigest()[:8]
    return _Key(AESGCM(raw), kid)


class CursorSeal:
    """Seals and opens cursors; one per process (it caches the key). `store` is called only when
    a cursor needs the key, so sources without credentials in their links never reach it."""

    def __init__(self, store: Callable[[], SecretStore]) -> None:
        self._store = store
        self._lock = threading.Lock()
        self._key: _Key | None = None

    def seal(self, cursor: str | None) -> str | None:
        if cursor is None or not needs_sealing(cursor):
            return cursor
        key = self._current(create=True)
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
        key = self._current(create=False)
        if key.kid != kid:  # replaced by another instance's first use since this one read it
            key = self._current(create=False, reread=True)
        if key.kid != kid:
            raise PermanentError(
                f"the checkpoint's cursor was sealed with a key the secret store no longer holds "
                f"(secret {SEALING_KEY_SECRET!r}); the type must be exported again"
            )
        try:
            # Strict: the lenient decoder would ignore characters, so a damaged text could open.
            data = base64.b64decode(body + "=" * (-len(body) % 4), altchars=b"-_", validate=True)
            return key.aead.decrypt(data[:_NONCE_BYTES], data[_NONCE_BYTES:], _AAD).decode()
        except (InvalidTag, ValueError, binascii.Error):
            raise PermanentError("the checkpoint's cursor is damaged: it does not decrypt") from None

    def _current(self, *, create: bool, reread: bool = False) -> _Key:
        # One lock around the whole read-or-create: the activities of one process run in
        # threads, and two first uses racing would each seal with a key of their own, one of
        # which the store then no longer holds.
        with self._lock:
            if self._key is not None and not reread:
                return self._key
            store = self._store()
            try:
                value = store.get(SEALING_KEY_SECRET)
            except SecretNotFoundError:
                if not create:
                    raise PermanentError(
                        f"the checkpoint's cursor is sealed, but the secret store holds no key "
                        f"(secret {SEALING_KEY_SECRET!r}); the type must be exported again"
                    ) from None
                store.set(SEALING_KEY_SECRET, secrets.token_urlsafe(32))
                # Read back: when instances race on first use, the last write wins for everyone.
                value = store.get(SEALING_KEY_SECRET)
            self._key = _key_from(value)
            return self._key
