"""What a batch's source holds, for the submit page's file picker (issue 9), framework-free.

    list_blob(params, container_of)   blobs under a prefix of one container: folders (names ending
                                      with "/") and files, or every file below it (`recursive`)
    list_local(params, root)          the same for a folder under BATCH_LOCAL_ROOT

A listing answers at most `limit` entries (default 500, at most 1,000) and a `continuation` that
gives the next ones, so no container or folder is too big to browse. Every name it shows is one a
batch accepts as an item: the local checks are `shared.items.local`'s (no `..`, no absolute
path, no symbolic link out of the root, only regular files); blob names the batch API would
refuse (`..` segments) are left out, and the service's own containers (`shared.storage_policy`:
job records, work data, the Functions host's keys) are never listed. Bad input is a
ValidationError naming the query field; a container or folder that does not exist is
`SourceNotFound` (404). Reads the service's own storage only: a source that needs a secret
cannot be browsed here (its secret would travel in a URL).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.core.paging import ItemPaged
from azure.storage.blob import BlobPrefix, ContainerClient

from shared._strict import check_container_name
from shared.destinations.blob import storage_errors
from shared.errors import PermanentError, ValidationError
from shared.items.base import MAX_ITEM_CHARS, UNKNOWN_SIZE, check_common
from shared.items.blob import check_blob_path
from shared.items.local import FOLDER_CONTENT_TYPE, LocalItemSource
from shared.storage_policy import is_reserved

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_LIMIT",
    "Entry",
    "Listing",
    "SourceNotFound",
    "list_blob",
    "list_local",
]

DEFAULT_LIMIT: Final = 500
MAX_LIMIT: Final = 1000
# A local continuation is the offset of the next entry in the sorted listing.
_OFFSET: Final = re.compile(r"^[0-9]{1,6}$")
_TRUE: Final = frozenset({"1", "true", "yes"})
_FALSE: Final = frozenset({"", "0", "false", "no"})

EntryKind = Literal["file", "folder"]


class SourceNotFound(PermanentError):
    """The container or folder named by `field` does not exist: 404, naming the field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.detail = message


@dataclass(frozen=True)
class Entry:
    """One line of a listing: `name` is the item a batch names (a folder's ends with "/")."""

    name: str
    kind: EntryKind
    size: int | None = None
    content_type: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "size": self.size, "content_type": self.content_type}


@dataclass(frozen=True)
class Listing:
    """One page of a source's entries; `where` says what was listed (container and prefix, or path)."""

    source: Literal["blob", "local"]
    where: Mapping[str, str | bool]
    entries: list[Entry] = field(default_factory=list)
    continuation: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            **self.where,
            "entries": [e.to_dict() for e in self.entries],
            "continuation": self.continuation,
        }


def _limit(params: Mapping[str, str]) -> int:
    text = params.get("limit") or str(DEFAULT_LIMIT)
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise ValidationError("limit", f"must be a whole number between 1 and {MAX_LIMIT}")
    return int(text)


def _flag(params: Mapping[str, str], name: str) -> bool:
    text = (params.get(name) or "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValidationError(name, "must be true or false")


def _checked(check: Callable[[str], None], value: str, field: str) -> None:
    try:
        check(value)
    except ValidationError as exc:
        raise ValidationError(field, exc.detail) from None


def _blob_prefix(params: Mapping[str, str]) -> str:
    prefix = params.get("prefix") or ""
    if not prefix:
        return ""
    _checked(check_common, prefix, "prefix")
    if prefix.startswith("/"):
        raise ValidationError("prefix", "must not start with '/' (blob names have no leading slash)")
    # The folder part must be a path a batch can name; the last part may be the start of a name.
    folder = prefix.rpartition("/")[0]
    if folder:
        _checked(check_blob_path, folder, "prefix")
    return prefix


def list_blob(params: Mapping[str, str], container_of: Callable[[str], ContainerClient]) -> Listing:
    """Blobs of `params["container"]` under `prefix` (`container_of` gives the service's client).

    Not recursive: the folders (`BlobPrefix`es, with the "/" delimiter) and files directly under
    the prefix; recursive: every file below it, by name. `continuation` is the storage service's
    own marker, passed back unchanged."""
    container = params.get("container") or ""
    if not container:
        raise ValidationError("container", "is required")
    check_container_name("container", container)
    if is_reserved(container):  # job records, work data, the host's keys: not for a file picker
        raise ValidationError("container", f"container {container!r} belongs to the service itself")
    prefix = _blob_prefix(params)
    recursive, limit = _flag(params, "recursive"), _limit(params)
    marker = params.get("continuation") or None
    if marker is not None and len(marker) > MAX_ITEM_CHARS:
        raise ValidationError("continuation", "is not a continuation this service returned")
    client = container_of(container)
    with storage_errors("list blobs of container", container):
        try:
            pages: ItemPaged[Any]  # of BlobProperties, and of BlobPrefix when walking
            if recursive:
                pages = client.list_blobs(name_starts_with=prefix or None, results_per_page=limit)
            else:
                pages = client.walk_blobs(
                    name_starts_with=prefix or None, delimiter="/", results_per_page=limit
                )
            paged = pages.by_page(continuation_token=marker)
            page = list(next(paged, []))
            # The page iterator carries the service's marker for the next page (None at the end).
            continuation = getattr(paged, "continuation_token", None) or None
        except ResourceNotFoundError:
            raise SourceNotFound(
                "container", f"no container {container!r} in the service's storage"
            ) from None
        except HttpResponseError as exc:
            if exc.status_code == 400 and marker is not None:
                raise ValidationError("continuation", "is not a continuation this service returned") from None
            raise
    entries: list[Entry] = []
    for blob in page:
        if isinstance(blob, BlobPrefix):
            if _acceptable(check_blob_path, str(blob.name).rstrip("/")):
                entries.append(Entry(str(blob.name), "folder"))
        elif _acceptable(check_blob_path, str(blob.name)):
            settings = blob.content_settings
            entries.append(Entry(str(blob.name), "file", int(blob.size), settings.content_type or None))
    where: dict[str, str | bool] = {"container": container, "prefix": prefix, "recursive": recursive}
    return Listing("blob", where, entries, continuation)


def _acceptable(check: Callable[[str], None], name: str) -> bool:
    try:
        check(name)
    except ValidationError:
        return False
    return True


def list_local(params: Mapping[str, str], root: Path | None) -> Listing:
    """Entries of the folder `params["path"]` ("" is the root) under `root` (BATCH_LOCAL_ROOT).

    Not recursive: its folders and files; recursive: every file below it. The folder is listed
    whole (`LocalItemSource.list`, bounded to its 10,000 entries) and paged by offset."""
    if root is None:
        raise SourceNotFound("path", "local files are not offered here (BATCH_LOCAL_ROOT is not set)")
    path = (params.get("path") or "").strip()
    path = path[:-1] if path.endswith("/") else path
    recursive, limit = _flag(params, "recursive"), _limit(params)
    text = params.get("continuation") or "0"
    if not _OFFSET.match(text):
        raise ValidationError("continuation", "is not a continuation this service returned")
    offset = int(text)
    source = LocalItemSource(root)
    if path:
        _checked(source.check, path, "path")  # no absolute path, no `.` or `..` segment
        folder = source.root / path
        try:
            linked, is_folder = folder.is_symlink(), folder.is_dir()
        except OSError:  # a name longer than the file system allows (ENAMETOOLONG), a loop
            raise SourceNotFound("path", f"no folder {path!r} under the local root") from None
        if linked:
            # A listing never enters a linked folder (no loops, no way out), so neither does this.
            raise ValidationError("path", "is a symbolic link, not a folder")
        if not is_folder:
            raise SourceNotFound("path", f"no folder {path!r} under the local root")
    try:
        found = source.list(f"{path}/" if path else "", recursive=recursive)
    except ValidationError as exc:  # a folder whose links lead out of the root, too many entries
        raise ValidationError("path", exc.detail) from None
    entries = [
        Entry(i.name, "folder")
        if i.content_type == FOLDER_CONTENT_TYPE and i.size == UNKNOWN_SIZE
        else Entry(i.name, "file", i.size, i.content_type)
        for i in found[offset : offset + limit]
    ]
    more = offset + limit < len(found)
    where: dict[str, str | bool] = {"path": path, "recursive": recursive}
    return Listing("local", where, entries, str(offset + limit) if more else None)
