"""`make_destination`: the seed's ExportDestinationClientFactory, keyed on the spec's kind.

The caller (an activity) has already resolved the spec's secret name to a value through the
SecretStore; this function only decides which implementation and which connection to use.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx

from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.base import Destination
from shared.destinations.http_put import HttpPutDestination, PutDestinationSpec
from shared.errors import PermanentError

__all__ = ["DestinationSpec", "make_destination"]

DestinationSpec = BlobDestinationSpec | PutDestinationSpec


def make_destination(
    spec: DestinationSpec,
    secret_value: str | None,
    settings: Settings,
    *,
    http_client: httpx.Client | None = None,
    job_id: str | None = None,
    labels: Mapping[str, str] | None = None,
    **client_kwargs: Any,
) -> Destination:
    """The destination for `spec`. Without a secret, blob destinations use the service's own
    storage connection (`EXPORT_STORAGE_CONNECTION`: Azurite locally, managed identity in Azure);
    with one, the client connects under the outbound policy (`shared.outbound_azure`).
    An HTTP PUT destination stages its files in the service's storage (`StagedPutDestination`)
    and needs the process's `http_client` (under the outbound policy), the job id and labels.
    `client_kwargs` go to the SDK client (tests pass `retry_total=0`)."""
    if spec.secret_name is not None and secret_value is None:
        raise ValueError("the destination secret must be resolved before making the destination")
    if spec.kind == "blob":
        # Imported here so that importing the factory does not load azure-storage-blob.
        from shared.destinations.blob import BlobDestination

        policy = settings.destination_policy
        policy.check(secret_value, spec.container)  # DestinationRefused: permanent
        connection = secret_value if secret_value is not None else settings.export_storage_connection
        # Another account's client checks the outbound policy again at every connection it opens.
        outbound = policy.outbound_for(secret_value)
        return BlobDestination.connect(
            connection, spec.container, spec.path_prefix, outbound=outbound, **client_kwargs
        )
    if isinstance(spec, PutDestinationSpec):
        from shared.destinations.blob import container_client
        from shared.destinations.staged_put import StagedPutDestination
        from shared.workstore import CONTAINER as WORK_CONTAINER

        if http_client is None or job_id is None:
            raise ValueError("a PUT destination needs the http client and the job id")
        put = HttpPutDestination(spec, http_client, secret_value)
        staging = container_client(settings.web_jobs_storage, WORK_CONTAINER)
        return StagedPutDestination(put, staging, job_id, labels or {})
    raise PermanentError(f"unknown destination kind {spec.kind!r}")
