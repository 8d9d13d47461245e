"""The `Destination` role (the seed's IExportDestinationClient) and deterministic block ids.

A destination knows how to reach its store and how to turn staged pages into files; it knows
nothing about FHIR, jobs or checkpoints. Files are built from blocks: each page is staged as one
block, and a commit makes the given list of blocks the file's whole content. Implementations
raise TransientError for what may pass (connection errors, 5xx, throttling) and PermanentError
for what cannot (no permission, bad credentials, missing container); messages carry no secrets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

__all__ = ["BLOCK_ID_LENGTH", "NDJSON_CONTENT_TYPE", "Destination", "block_id"]

NDJSON_CONTENT_TYPE: Final = "application/fhir+ndjson"

_PAGE_DIGITS: Final = 12
_DIGEST_CHARS: Final = 20
# "<20 hex>-<12 digits>": 33 ASCII characters for every (type, file, page). Azure requires all
# block ids of a blob to have the same length (Azurite does not check) and at most 64 bytes
# before base64; the storage SDK base64-encodes them on the wire (44 characters, all equal).
BLOCK_ID_LENGTH: Final = _DIGEST_CHARS + 1 + _PAGE_DIGITS


def block_id(resource_type: str, file_sequence: int, page: int) -> str:
    """The block id of page `page` (the type's page position) in file `file_sequence`.

    Deterministic, so a page that runs again after a crash or retry stages the same id and
    replaces its block instead of adding a second copy. The digest separates ids of different
    files; the page number stays readable for people debugging a block list.
    """
    if file_sequence < 1:
        raise ValueError("file_sequence starts at 1")
    if not 0 <= page < 10**_PAGE_DIGITS:
        raise ValueError(f"page must be in 0..{10**_PAGE_DIGITS - 1}")
    digest = hashlib.sha256(f"{resource_type}\n{file_sequence}".encode()).hexdigest()[:_DIGEST_CHARS]
    return f"{digest}-{page:0{_PAGE_DIGITS}d}"


@runtime_checkable
class Destination(Protocol):
    """Where export files are written. File names are relative to the destination's prefix."""

    def check_connection(self) -> None:
        """Reach the store and prepare it (e.g. create the container); fail early and typed."""
        ...

    def stage(self, file_name: str, block_id: str, data: bytes) -> None:
        """Upload `data` as block `block_id` of `file_name` (not visible until committed).
        Staging an id again replaces that block: the retry of a page is idempotent."""
        ...

    def commit(self, file_name: str, block_ids: Sequence[str], metadata: Mapping[str, str]) -> None:
        """Make `block_ids`, in order, the whole content of `file_name`, with `metadata` and the
        NDJSON content type. Staged blocks left out of the list are discarded."""
        ...

    def delete(self, file_names: Iterable[str]) -> None:
        """Remove files, committed or only staged; missing files are not an error."""
        ...

    def url(self, file_name: str) -> str:
        """Where the file can be read, without any credential in it."""
        ...
