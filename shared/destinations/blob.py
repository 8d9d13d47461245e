"""`BlobDestination`: export files as block blobs, one staged block per page, committed by list.

Put Block List replaces the blob's content type and metadata, so every commit sends both; blocks
staged but left out of the list are dropped by the service; staging an id again replaces the
block (reference facts: Azurite and Azure agree). A `ContainerClient` is built once per
(connection, container) and reused by every destination of the process: clients own HTTP
connection pools and credentials, which are expensive to make per call.

Connections are a connection string, a SAS URL (account or container scoped), or an account URL
without a credential, which means DefaultAzureCredential (managed identity in Azure). A client for
an account a request names (`outbound` given: `DestinationPolicy.outbound_for`) connects through
`shared.outbound_azure`'s transport, follows no redirect, and is never signed with that identity.
"""

from __future__ import annotations

import hashlib
import ipaddress
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cache
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared.destinations.base import NDJSON_CONTENT_TYPE
from shared.errors import PermanentError, RetryAfterError, TransientError
from shared.outbound import OutboundPolicy
from shared.retry import parse_retry_after
from shared.storage_policy import DestinationRefused

__all__ = ["BlobDestination", "committed_block_ids", "container_client", "storage_errors"]

log = logging.getLogger(__name__)

_CACHE_SIZE: Final = 32
_clients: OrderedDict[tuple[Any, ...], ContainerClient] = OrderedDict()
_clients_lock = threading.Lock()
# Metadata names must be C# identifiers (Azure rejects others with a 400 that names no key).
_METADATA_KEY: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# 409 included: the conflicts these calls can meet (ContainerBeingDeleted, a lease held by a
# crashed writer) pass with time; 4xx otherwise means the request itself is wrong.
_TRANSIENT_STATUS: Final = frozenset({408, 409, 429, 500, 502, 503, 504})


class BlobDestination:
    """Files under `path_prefix` in one blob container. Implements `Destination`."""

    def __init__(self, container: ContainerClient, path_prefix: str = "") -> None:
        self._container = container
        self._prefix = path_prefix.strip("/")

    @classmethod
    def connect(
        cls,
        connection: str,
        container: str,
        path_prefix: str = "",
        *,
        outbound: OutboundPolicy | None = None,
        **client_kwargs: Any,
    ) -> BlobDestination:
        """A destination over the cached client for (connection, container); `outbound` as
        `container_client`'s."""
        return cls(container_client(connection, container, outbound=outbound, **client_kwargs), path_prefix)

    @property
    def container_client(self) -> ContainerClient:
        return self._container

    def blob_name(self, file_name: str) -> str:
        return f"{self._prefix}/{file_name}" if self._prefix else file_name

    def check_connection(self) -> None:
        with storage_errors("create container", self._container.container_name):
            try:
                self._container.create_container()
            except ResourceExistsError:
                pass  # the normal case after the first job: nothing to create
            except HttpResponseError as exc:
                # A container-scoped SAS may not create containers; if it can list, the
                # container exists and we have what an export needs.
                if exc.status_code != 403:
                    raise
                next(iter(self._container.list_blobs(results_per_page=1).by_page()), None)

    def stage(self, file_name: str, block_id: str, data: bytes) -> None:
        if not data:
            raise ValueError("an empty page has no block to stage; skip it")
        blob = self._container.get_blob_client(self.blob_name(file_name))
        with storage_errors("stage block", file_name):
            # validate_content sends an MD5 the service checks, so a corrupted upload is refused.
            blob.stage_block(block_id, data, length=len(data), validate_content=True)

    def commit(self, file_name: str, block_ids: Sequence[str], metadata: Mapping[str, str]) -> None:
        for key in metadata:
            if not _METADATA_KEY.match(key):
                raise PermanentError(f"metadata name {key!r} is not a valid identifier")
        blob = self._container.get_blob_client(self.blob_name(file_name))
        with storage_errors("commit block list", file_name):
            blob.commit_block_list(
                [BlobBlock(block_id=block_id) for block_id in block_ids],
                content_settings=ContentSettings(content_type=NDJSON_CONTENT_TYPE),
                metadata=dict(metadata),
            )

    def delete(self, file_names: Iterable[str]) -> None:
        for file_name in file_names:
            blob = self._container.get_blob_client(self.blob_name(file_name))
            with storage_errors("delete blob", file_name):
                try:
                    blob.delete_blob(delete_snapshots="include")
                except ResourceNotFoundError:
                    _drop_uncommitted(blob)

    def url(self, file_name: str) -> str:
        """The blob URL without its query: a SAS in the connection must not reach job records."""
        parts = urlsplit(self._container.get_blob_client(self.blob_name(file_name)).url)
        return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    def committed_blocks(self, file_name: str) -> list[str]:
        """Block ids of the committed content, in order; [] when the file was never committed."""
        with storage_errors("get block list", file_name):
            return committed_block_ids(self._container.get_blob_client(self.blob_name(file_name)))


def committed_block_ids(blob: BlobClient) -> list[str]:
    """The committed block list of `blob` (ids as staged); [] when the blob does not exist."""
    try:
        committed, _ = blob.get_block_list("committed")
    except ResourceNotFoundError:
        return []
    return [str(block.id) for block in committed]


def _drop_uncommitted(blob: BlobClient) -> None:
    """Delete Blob found no committed blob, but a partial file may still have staged blocks,
    which wait up to a week for garbage collection. Committing an empty list drops them; then
    delete that empty blob. (Azurite already drops them on Delete Blob; this is for Azure.)"""
    try:
        _, uncommitted = blob.get_block_list("uncommitted")
    except ResourceNotFoundError:
        return
    if uncommitted:
        blob.commit_block_list([])
        blob.delete_blob()


def container_client(
    connection: str, container: str, *, outbound: OutboundPolicy | None = None, **client_kwargs: Any
) -> ContainerClient:
    """The process-wide client for (connection, container), built on first use.

    `outbound`: the connection is an account a request named, and the client connects only where
    this policy allows, checked at every connection (None: the service's own storage, from
    settings). Keyed by a digest of the connection, not by account alone: two jobs with different
    SAS tokens for one container must not share a client (tokens differ in expiry and rights).
    """
    fingerprint = hashlib.sha256(connection.encode()).hexdigest()
    # The resolver is part of the key: policies equal by entries may resolve differently (tests).
    guard = None if outbound is None else (outbound, outbound.resolver)
    key = (fingerprint, container, repr(sorted(client_kwargs.items())), guard)
    with _clients_lock:
        client = _clients.get(key)
        if client is not None:
            _clients.move_to_end(key)
            return client
    client = _build_client(
        connection, container, _client_options(outbound, client_kwargs), outbound is not None
    )
    with _clients_lock:
        client = _clients.setdefault(key, client)
        while len(_clients) > _CACHE_SIZE:
            _clients.popitem(last=False)
    return client


def _client_options(outbound: OutboundPolicy | None, client_kwargs: dict[str, Any]) -> dict[str, Any]:
    """The client's keyword arguments; under a policy, with the guarded transport and no redirects
    (storage never redirects; a redirect from a named host is someone else's wish)."""
    kwargs = dict(client_kwargs)
    if outbound is None:
        return kwargs
    if "transport" in kwargs:
        raise ValueError("a client under the outbound policy connects through its own transport")
    # Imported here: only clients for a named account need it.
    from shared.outbound_azure import guarded_storage_transport, transport_options

    transport = guarded_storage_transport(outbound, **transport_options(kwargs))
    return {**kwargs, "transport": transport, "permit_redirects": False}


def _build_client(connection: str, container: str, kwargs: dict[str, Any], guarded: bool) -> ContainerClient:
    if not connection.lower().startswith(("http://", "https://")):
        try:
            return ContainerClient.from_connection_string(connection, container, **kwargs)
        except ValueError:
            # `from None`: neither message nor chain may quote the string; it holds the account key.
            raise PermanentError("destination connection string is not valid") from None
    parts = urlsplit(connection)
    segments = [s for s in parts.path.split("/") if s]
    account_path = ""
    if _path_style(parts.hostname or "") and segments:
        # Emulator URLs carry the account name first: http://127.0.0.1:10000/devstoreaccount1/...
        account_path, segments = "/" + segments[0], segments[1:]
    if segments and segments != [container]:
        raise PermanentError(f"the destination URL is for another container than {container!r}")
    account_url = urlunsplit((parts.scheme, parts.netloc, account_path, parts.query, ""))
    if guarded and not parts.query:
        # Also refused by DestinationPolicy.check; here so no caller can lend the identity.
        raise DestinationRefused(
            "an account URL without a SAS would be signed with the service's own identity, "
            "which is only used for the service's storage; give a SAS URL or a connection string"
        )
    # No query: no SAS, so the app's own identity (DefaultAzureCredential) signs the requests.
    credential = None if parts.query else _default_credential()
    return ContainerClient(account_url, container, credential=credential, **kwargs)


def _path_style(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@cache
def _default_credential() -> TokenCredential:
    # Imported here: azure-identity is only needed when a destination has no secret.
    from azure.identity import DefaultAzureCredential

    return DefaultAzureCredential()


@contextmanager
def storage_errors(action: str, subject: str) -> Iterator[None]:
    """Map SDK errors onto the domain tree. Messages name the action and the file, and carry the
    status and error code; never the request URL, which can contain a SAS signature."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise PermanentError(f"{action} {subject}: not authorized ({_describe(exc)})") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        message = f"{action} {subject}: {_describe(exc)}"
        if status in _TRANSIENT_STATUS or status >= 500:
            retry_after = _retry_after(exc)
            if retry_after is not None:
                raise RetryAfterError(message, retry_after) from exc
            raise TransientError(message) from exc
        raise PermanentError(message) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        log.warning("storage unreachable during %s of %s: %s", action, subject, type(exc).__name__)
        raise TransientError(f"{action} {subject}: storage unreachable ({type(exc).__name__})") from exc


def _describe(exc: HttpResponseError) -> str:
    # Storage errors carry the service's error code (e.g. AuthorizationPermissionMismatch).
    code = getattr(exc, "error_code", None) or exc.reason or ""
    return f"HTTP {exc.status_code} {code}".strip()


def _retry_after(exc: HttpResponseError) -> float | None:
    headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
    return parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
