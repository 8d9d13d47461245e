"""Storage connections for triggers and output bindings: setting resolution and SDK clients.

Resolution follows host facts §6: a binding's `connection` names an app setting; the exact name
wins, then `AzureWebJobs<name>`, then `ConnectionStrings:<name>` (how local.settings.json's
ConnectionStrings section reaches the environment); an empty name means `AzureWebJobsStorage`.
`UseDevelopmentStorage=true` is expanded to the Azurite defaults explicitly (127.0.0.1, ports
10000/10001/10002), so the endpoints do not depend on an SDK's interpretation of the shortcut.

Identity-based connections (`<prefix>__blobServiceUri`, `__queueServiceUri`, `__serviceUri`,
`__accountName`) are recognised so the error can say what is missing, but not supported: they
need a token credential, and nothing on this machine can issue one.

Clients are the `.aio` ones: every listener runs on the host's event loop, and a thread per
blocking call would compete with sync user functions for the default executor.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

__all__ = [
    "DEVELOPMENT_STORAGE",
    "HOST_STORAGE_SETTING",
    "StorageClients",
    "StorageConnection",
    "StorageConnectionError",
    "resolve_connection",
    "send_creating_queue",
]

HOST_STORAGE_SETTING = "AzureWebJobsStorage"
_DEV_ACCOUNT = "devstoreaccount1"
# The well-known Azurite/emulator account key (public, documented by Microsoft).
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = (
    f"DefaultEndpointsProtocol=http;AccountName={_DEV_ACCOUNT};AccountKey={_DEV_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{_DEV_ACCOUNT};"
    f"QueueEndpoint=http://127.0.0.1:10001/{_DEV_ACCOUNT};"
    f"TableEndpoint=http://127.0.0.1:10002/{_DEV_ACCOUNT};"
)
_IDENTITY_SUFFIXES = ("__blobServiceUri", "__queueServiceUri", "__serviceUri", "__accountName")


class StorageConnectionError(Exception):
    """A binding's connection cannot be resolved or used; the message names the settings."""


@dataclass(frozen=True)
class StorageConnection:
    """A resolved connection: the setting it came from and its connection string."""

    setting: str
    connection_string: str


def _parse_pairs(connection_string: str) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for part in connection_string.split(";"):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            pairs[key.strip().lower()] = value.strip()
    return pairs


def _expand(connection_string: str) -> str:
    pairs = _parse_pairs(connection_string)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return DEVELOPMENT_STORAGE
    return connection_string


def resolve_connection(name: str | None, environ: Mapping[str, str] | None = None) -> StorageConnection:
    """Find the connection string for a binding's `connection` value (see module docstring)."""
    env = os.environ if environ is None else environ
    name = (name or "").strip()
    candidates = (
        [name, f"AzureWebJobs{name}", f"ConnectionStrings:{name}"] if name else [HOST_STORAGE_SETTING]
    )
    for setting in candidates:
        value = env.get(setting, "").strip()
        if value:
            return StorageConnection(setting, _expand(value))
    for prefix in candidates:
        found = [prefix + s for s in _IDENTITY_SUFFIXES if env.get(prefix + s)]
        if found:
            raise StorageConnectionError(
                f"connection {name or HOST_STORAGE_SETTING!r} is identity-based ({', '.join(found)}); "
                "selfhost supports connection strings only (e.g. UseDevelopmentStorage=true)"
            )
    raise StorageConnectionError(
        f"connection {name or HOST_STORAGE_SETTING!r}: none of the app settings "
        f"{', '.join(candidates)} is set"
    )


def _unusable(connection: StorageConnection, exc: Exception) -> StorageConnectionError:
    return StorageConnectionError(
        f"app setting {connection.setting!r} is not a usable storage connection string: {exc}"
    )


_Client = TypeVar("_Client", BlobServiceClient, QueueServiceClient)


class StorageClients:
    """Builds each async service client once per connection string (two settings holding the same
    string share clients); `close()` closes them all."""

    def __init__(self) -> None:
        self._blob: dict[str, BlobServiceClient] = {}
        self._queue: dict[str, QueueServiceClient] = {}

    def blob_service(self, connection: StorageConnection) -> BlobServiceClient:
        return _cached(self._blob, BlobServiceClient.from_connection_string, connection)

    def queue_service(self, connection: StorageConnection) -> QueueServiceClient:
        return _cached(self._queue, QueueServiceClient.from_connection_string, connection)

    async def close(self) -> None:
        clients: list[BlobServiceClient | QueueServiceClient] = [*self._blob.values(), *self._queue.values()]
        self._blob.clear()
        self._queue.clear()
        for client in clients:
            await client.close()


def _cached(
    cache: dict[str, _Client], build: Callable[[str], _Client], connection: StorageConnection
) -> _Client:
    client = cache.get(connection.connection_string)
    if client is None:
        try:
            client = build(connection.connection_string)
        except ValueError as exc:
            raise _unusable(connection, exc) from exc
        cache[connection.connection_string] = client
    return client


async def send_creating_queue(client: QueueClient, text: str) -> None:
    """Send one message, creating the queue first if it does not exist."""
    try:
        await client.send_message(text)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            await client.create_queue()
        await client.send_message(text)
