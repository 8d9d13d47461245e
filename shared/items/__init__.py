"""Item sources of batches: one Protocol (`base.ItemSource`), one module per kind, a factory.

base.py      ItemInfo, ItemSource (protocol), validate_items (field `items[i]`), CHUNK_SIZE
blob.py      BlobItemSource: blob paths in a source container
http.py      HttpItemSource: http(s) URLs through the service's policy-bound httpx.Client
local.py     LocalItemSource: files under a local root, and `list` for a file picker
factory.py   make_item_source(kind, ...)

`base` and this package are free of SDK imports; import implementations from their modules.
"""

from __future__ import annotations

from shared.items.base import (
    CHUNK_SIZE,
    ITEM_KINDS,
    UNKNOWN_SIZE,
    ItemInfo,
    ItemKind,
    ItemSource,
    validate_items,
)
from shared.items.factory import make_item_source

__all__ = [
    "CHUNK_SIZE",
    "ITEM_KINDS",
    "UNKNOWN_SIZE",
    "ItemInfo",
    "ItemKind",
    "ItemSource",
    "make_item_source",
    "validate_items",
]
