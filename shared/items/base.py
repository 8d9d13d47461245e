"""The `ItemSource` role: where the files of a batch come from, one item (a file) at a time.

An item is a name the source understands (a blob path, a URL, a path under a local root). A
source can `stat` an item (size, content type, a version tag) and `open` it as an iterator of
chunks of about `CHUNK_SIZE` bytes, so no caller ever holds a whole file. Opening may start at an
offset (a resumed transfer) and may be pinned to the version `stat` saw: if the item changed in
between, reading it fails with TransientError, and the retry starts over on the new version.

Errors follow `shared.errors`: TransientError for what may pass (throttling, 5xx, timeouts, an
item changing while read), PermanentError for what cannot (no such item, refused by policy), and
ValidationError for a name the source can never accept. Nothing here does I/O.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

from shared.errors import ValidationError

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_CONTENT_TYPE",
    "ITEM_KINDS",
    "MAX_ITEM_CHARS",
    "UNKNOWN_SIZE",
    "ItemInfo",
    "ItemKind",
    "ItemSource",
    "check_common",
    "validate_items",
]

ItemKind = Literal["blob", "url", "local"]
ITEM_KINDS: Final[tuple[ItemKind, ...]] = ("blob", "url", "local")

# 4 MiB: the largest range Azure returns with a Content-MD5, and few enough requests per GiB.
CHUNK_SIZE: Final = 4 * 1024 * 1024
UNKNOWN_SIZE: Final = -1
DEFAULT_CONTENT_TYPE: Final = "application/octet-stream"
# Blob names are at most 1,024 characters; URLs and paths longer than that are not file names.
MAX_ITEM_CHARS: Final = 1024


@dataclass(frozen=True)
class ItemInfo:
    """What a source knows about one item before reading it.

    `size` is in bytes, UNKNOWN_SIZE (-1) when the source does not say (an HTTP answer without
    Content-Length). `version` changes whenever the content does: the blob's ETag, the HTTP ETag
    (else Last-Modified), a file's mtime and size; "" when the source offers none, and then a
    transfer cannot tell a changed item from a resumed one (it starts over instead of resuming).
    """

    name: str
    size: int
    content_type: str
    version: str

    @property
    def size_known(self) -> bool:
        return self.size >= 0


@runtime_checkable
class ItemSource(Protocol):
    """Where the items of a batch are read from."""

    @property
    def kind(self) -> ItemKind: ...

    def check(self, item: str) -> None:
        """Refuse (ValidationError, field "item") a name this source can never read; no I/O."""
        ...

    def stat(self, item: str) -> ItemInfo:
        """Size, content type and version of `item`."""
        ...

    def open(
        self, item: str, *, offset: int = 0, version: str | None = None
    ) -> AbstractContextManager[Iterator[bytes]]:
        """The bytes of `item` from `offset`, in chunks of at most about CHUNK_SIZE.

        With `version` (from `stat`), the read fails with TransientError if the item is no longer
        that version, when it is opened or while it is read. Leaving the context releases the
        connection or file even when the chunks were not all read.
        """
        ...


def check_common(item: str) -> None:
    """The rules every kind shares: a non-empty string of printable characters, bounded."""
    if not isinstance(item, str) or not item:
        raise ValidationError("item", "must be a non-empty string")
    if len(item) > MAX_ITEM_CHARS:
        raise ValidationError("item", f"must be at most {MAX_ITEM_CHARS} characters")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in item):
        raise ValidationError("item", "must not contain control characters")


def validate_items(source: ItemSource, items: Sequence[str]) -> None:
    """Check every name of a batch, failing on the first bad one with field `items[i]`."""
    for index, item in enumerate(items):
        try:
            source.check(item)
        except ValidationError as exc:
            raise ValidationError(f"items[{index}]", exc.detail) from None
