"""`make_destination`: the seed's ExportDestinationClientFactory, keyed on the spec's kind.

The caller (an activity) has already resolved the spec's secret name to a value through the
SecretStore; this function only decides which implementation and which connection to use.
"""

from __future__ import annotations

from typing import Any

from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.base import Destination
from shared.errors import PermanentError

__all__ = ["DestinationSpec", "make_destination"]

# One kind today; a union of spec types as more arrive (each with its own `kind`).
DestinationSpec = BlobDestinationSpec


def make_destination(
    spec: DestinationSpec, secret_value: str | None, settings: Settings, **client_kwargs: Any
) -> Destination:
    """The destination for `spec`. Without a secret, blob destinations use the service's own
    storage connection (`EXPORT_STORAGE_CONNECTION`: Azurite locally, managed identity in Azure).
    `client_kwargs` go to the SDK client (tests pass `retry_total=0`)."""
    if spec.secret_name is not None and secret_value is None:
        raise ValueError("the destination secret must be resolved before making the destination")
    if spec.kind == "blob":
        # Imported here so that importing the factory does not load azure-storage-blob.
        from shared.destinations.blob import BlobDestination

        connection = secret_value if secret_value is not None else settings.export_storage_connection
        return BlobDestination.connect(connection, spec.container, spec.path_prefix, **client_kwargs)
    raise PermanentError(f"unknown destination kind {spec.kind!r}")
