"""Blob trigger receipts: "this function has handled this version (ETag) of this blob".

Same layout as the real host (host facts §4.2), so a receipt written by either is honoured by
the other: blob `azure-webjobs-hosts/blobreceipts/{hostId}/Host.Functions.{name}/{etag}/
{container}/{blobName}`, created empty with `If-None-Match: *` and metadata `Incomplete`, and
completed by removing that metadata. The ETag keeps its quotes, as the .NET SDK's
`ETag.ToString()` renders it (blob listings return it bare; `normalize_etag` adds them).
"""

from __future__ import annotations

import contextlib
import enum

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobClient, ContainerClient

__all__ = ["HOSTS_CONTAINER", "ReceiptState", "Receipts", "normalize_etag", "receipt_blob_name"]

HOSTS_CONTAINER = "azure-webjobs-hosts"
_INCOMPLETE = "Incomplete"


class ReceiptState(enum.Enum):
    MISSING = "missing"
    INCOMPLETE = "incomplete"
    COMPLETE = "complete"


def normalize_etag(etag: str) -> str:
    """The quoted form (`"0x8D…"`) whatever the API returned."""
    etag = etag.strip()
    return etag if etag.startswith('"') or etag.startswith('W/"') else f'"{etag}"'


def receipt_blob_name(host_id: str, function_id: str, etag: str, container: str, blob_name: str) -> str:
    return f"blobreceipts/{host_id}/{function_id}/{normalize_etag(etag)}/{container}/{blob_name}"


class Receipts:
    """Receipts of one function, in the hosts container of the host storage account."""

    def __init__(self, hosts: ContainerClient, host_id: str, function_id: str) -> None:
        self._hosts = hosts
        self._host_id = host_id
        self._function_id = function_id

    def _blob(self, etag: str, container: str, blob_name: str) -> BlobClient:
        return self._hosts.get_blob_client(
            receipt_blob_name(self._host_id, self._function_id, etag, container, blob_name)
        )

    async def ensure_container(self) -> None:
        with contextlib.suppress(ResourceExistsError):
            await self._hosts.create_container()

    async def state(self, etag: str, container: str, blob_name: str) -> ReceiptState:
        try:
            props = await self._blob(etag, container, blob_name).get_blob_properties()
        except ResourceNotFoundError:
            return ReceiptState.MISSING
        incomplete = any(k.lower() == _INCOMPLETE.lower() for k in (props.metadata or {}))
        return ReceiptState.INCOMPLETE if incomplete else ReceiptState.COMPLETE

    async def try_create_incomplete(
        self, etag: str, container: str, blob_name: str, *, retry: bool = True
    ) -> bool:
        """Create the receipt as incomplete; False if it already exists (If-None-Match: *)."""
        try:
            await self._blob(etag, container, blob_name).upload_blob(
                b"", overwrite=False, metadata={_INCOMPLETE: "true"}
            )
        except ResourceExistsError:
            return False
        except ResourceNotFoundError:
            if not retry:
                raise
            # The hosts container was deleted while we ran: recreate it once and retry.
            await self.ensure_container()
            return await self.try_create_incomplete(etag, container, blob_name, retry=False)
        return True

    async def complete(self, etag: str, container: str, blob_name: str) -> None:
        await self._blob(etag, container, blob_name).set_blob_metadata({})
