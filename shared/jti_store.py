"""Seen SMART client-assertion ids (`jti`), so a replayed assertion is refused on every instance.

    JtiStore (Protocol)   `remember(client_id, jti, expires_at)` -> False when already seen
    BlobJtiStore          one empty blob per (client, jti) in container `smart-jti` of the
                          service's own storage (the job store's), created only if missing
                          (If-None-Match: *): a 409 means another request, on any instance, used it
    MemoryJtiStore        the same in a dict, for unit tests

Blob names are sha256 digests, so client text never shapes a name. An entry only matters while
its assertion is unexpired (at most 5 minutes); older blobs are dead weight that a storage
lifecycle rule may delete (metadata `expires` says when each one stopped mattering).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from datetime import UTC, datetime
from typing import Final, Protocol

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.storage.blob import ContainerClient

from shared.destinations.blob import container_client, storage_errors

__all__ = ["CONTAINER", "BlobJtiStore", "JtiStore", "MemoryJtiStore"]

CONTAINER: Final = "smart-jti"


class JtiStore(Protocol):
    """Records assertion ids; storage failures raise TransientError."""

    def remember(self, client_id: str, jti: str, expires_at: float) -> bool:
        """True the first time (client_id, jti) is seen, False for a replay."""
        ...


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class BlobJtiStore:
    """`JtiStore` over a blob container; safe across processes and instances."""

    def __init__(self, container: ContainerClient) -> None:
        self._c = container
        self._ready = False

    @classmethod
    def connect(cls, connection: str) -> BlobJtiStore:
        return cls(container_client(connection, CONTAINER))

    def _ensure(self) -> None:
        if self._ready:
            return
        # ResourceExistsError: the normal case after the first token request.
        with storage_errors("create container", CONTAINER), contextlib.suppress(ResourceExistsError):
            self._c.create_container()
        self._ready = True

    def remember(self, client_id: str, jti: str, expires_at: float) -> bool:
        self._ensure()
        name = f"{_digest(client_id)}/{_digest(jti)}"
        expires = datetime.fromtimestamp(expires_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with storage_errors("record assertion id", name):
            try:
                # overwrite=False makes the SDK send If-None-Match: *, so exactly one request wins.
                self._c.upload_blob(name, b"", overwrite=False, metadata={"expires": expires})
            except ResourceExistsError:
                return False
            except HttpResponseError as exc:
                if exc.status_code == 412:  # the condition failed: the blob exists
                    return False
                raise
        return True


class MemoryJtiStore:
    """In-process `JtiStore` for tests (entries are never pruned: a test lives minutes)."""

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def remember(self, client_id: str, jti: str, expires_at: float) -> bool:
        with self._lock:
            key = (client_id, jti)
            if key in self._seen:
                return False
            self._seen[key] = expires_at
            return True

    def __len__(self) -> int:
        return len(self._seen)
