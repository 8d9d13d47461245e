"""`BlobItemSource`: items are blob paths in one source container.

Reads are ranged GETs of 2 x CHUNK_SIZE bytes (per-request costs dominate smaller ones), the next
read ahead while the current one is sent, each pinned with If-Match to the ETag of the first
(or of the version asked for), so a blob overwritten mid-read fails with TransientError instead
of yielding a mix of two versions. The container client is the process-wide cached one
(`shared.destinations.blob.container_client`), and SDK errors are mapped by the same
`storage_errors` the blob destination uses; messages never carry the URL (it can hold a SAS).
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import HttpResponseError, ResourceModifiedError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient

from shared.destinations.blob import container_client, storage_errors
from shared.errors import PermanentError, TransientError, ValidationError
from shared.items.base import CHUNK_SIZE, DEFAULT_CONTENT_TYPE, ItemInfo, ItemKind, check_common

__all__ = ["BlobItemSource"]

_KIND: Final[ItemKind] = "blob"


def check_blob_path(item: str) -> None:
    """A blob path this source can read as named (ValidationError, field "item", if not)."""
    check_common(item)
    if item.startswith("/") or item.endswith("/"):
        raise ValidationError("item", "a blob path must not start or end with '/'")
    # URL normalisation would resolve these segments, reading another blob than named.
    if any(part in ("", ".", "..") for part in item.split("/")):
        raise ValidationError("item", "a blob path must not contain empty, '.' or '..' segments")


class BlobItemSource:
    """Blobs of one container, named by their path. Implements `ItemSource`."""

    kind: Final[ItemKind] = _KIND

    def __init__(self, container: ContainerClient, *, chunk_size: int = 2 * CHUNK_SIZE) -> None:
        self._container = container
        self._chunk_size = chunk_size

    @classmethod
    def connect(cls, connection: str, container: str, **client_kwargs: Any) -> BlobItemSource:
        """A source over the cached client for (connection, container); the connection is a
        connection string, a SAS URL, or an account URL (then the app's own identity)."""
        return cls(container_client(connection, container, **client_kwargs))

    @property
    def container_client(self) -> ContainerClient:
        return self._container

    def check(self, item: str) -> None:
        check_blob_path(item)

    def stat(self, item: str) -> ItemInfo:
        self.check(item)
        blob = self._container.get_blob_client(item)
        with storage_errors("read properties of blob", item):
            try:
                props = blob.get_blob_properties()
            except ResourceNotFoundError as exc:
                raise self._not_found(item, exc) from None
        content_type = props.content_settings.content_type or DEFAULT_CONTENT_TYPE
        return ItemInfo(name=item, size=int(props.size), content_type=content_type, version=str(props.etag))

    @contextmanager
    def open(self, item: str, *, offset: int = 0, version: str | None = None) -> Iterator[Iterator[bytes]]:
        self.check(item)
        if offset < 0:
            raise ValueError("offset must not be negative")
        blob = self._container.get_blob_client(item)
        if version is None:
            version = self.stat(item).version
        yield self._chunks(blob, item, offset, version)

    def _chunks(self, blob: BlobClient, item: str, offset: int, etag: str) -> Iterator[bytes]:
        # One GET per chunk (rather than the SDK's downloader, whose first GET is 32 MiB): memory
        # stays two chunks, and each request is retried on its own by the SDK's retry policy. The
        # next chunk is read while the caller sends this one, so a transfer is not the sum of
        # both waits (measured by bench/transfer.py).
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="blob-read-ahead") as pool:
            ahead: Future[bytes | None] = pool.submit(self._read, blob, item, offset, etag)
            while True:
                data = ahead.result()
                if data is None:
                    return
                offset += len(data)
                more = len(data) == self._chunk_size
                if more:
                    ahead = pool.submit(self._read, blob, item, offset, etag)
                if data:
                    yield data
                if not more:
                    return

    def _read(self, blob: BlobClient, item: str, offset: int, etag: str) -> bytes | None:
        """The chunk at `offset`, or None past the end."""
        with storage_errors("read blob", item):
            try:
                return bytes(
                    blob.download_blob(
                        offset=offset,
                        length=self._chunk_size,
                        etag=etag,
                        match_condition=MatchConditions.IfNotModified,
                        max_concurrency=1,
                    ).readall()
                )
            except ResourceNotFoundError as exc:
                raise self._not_found(item, exc) from None
            except ResourceModifiedError:
                raise TransientError(
                    f"read blob {item}: it changed while being read; a retry reads the new version"
                ) from None
            except HttpResponseError as exc:
                # 416: the offset is at or past the end (an empty blob, or a resumed read that
                # had everything): nothing more to read. Anything else is mapped as usual.
                if exc.status_code == 416:
                    return None
                raise

    def _not_found(self, item: str, exc: ResourceNotFoundError) -> PermanentError:
        if getattr(exc, "error_code", None) == "ContainerNotFound":
            return PermanentError(f"no such container {self._container.container_name!r}")
        return PermanentError(f"no such blob {item!r} in container {self._container.container_name!r}")
