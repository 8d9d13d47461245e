"""`make_item_source`: the item source of a batch, keyed on its kind.

The caller (an activity or the batch API) passes what it already has: the secret value resolved
through the SecretStore, the service's storage connection, the process-wide HTTP client, the
configured local root. This function only picks the implementation and the connection; the SDK
modules are imported only for the kind asked.
"""

from __future__ import annotations

import os
from typing import Any

import httpx

from shared.errors import ValidationError
from shared.items.base import ITEM_KINDS, ItemSource

__all__ = ["make_item_source"]


def make_item_source(
    kind: str,
    *,
    container: str | None = None,
    secret_value: str | None = None,
    storage_connection: str | None = None,
    http_client: httpx.Client | None = None,
    local_root: str | os.PathLike[str] | None = None,
    **client_kwargs: Any,
) -> ItemSource:
    """The source for `kind`:

    - "blob": blobs of `container`; the connection is `secret_value` (a connection string or a
      SAS URL) or else `storage_connection`, the service's own. `client_kwargs` go to the SDK
      client (tests pass `retry_total=0`).
    - "url": http(s) URLs read through `http_client` (the service's, under the outbound policy);
      `secret_value`, when given, is sent as a bearer token.
    - "local": files under `local_root`.

    Missing dependencies are the caller's bug (ValueError); an unknown kind is the request's
    (ValidationError naming `kind`).
    """
    if kind == "blob":
        from shared.items.blob import BlobItemSource

        connection = secret_value if secret_value is not None else storage_connection
        if not container or not connection:
            raise ValueError("a blob item source needs a container and a connection")
        return BlobItemSource.connect(connection, container, **client_kwargs)
    if kind == "url":
        from shared.items.http import HttpItemSource

        if http_client is None:
            raise ValueError("a url item source needs the service's http client")
        return HttpItemSource(http_client, bearer_token=secret_value)
    if kind == "local":
        from shared.items.local import LocalItemSource

        if local_root is None:
            raise ValueError("a local item source needs the configured local root")
        return LocalItemSource(local_root)
    raise ValidationError("kind", f"unknown item source kind {kind!r} (known: {', '.join(ITEM_KINDS)})")
