"""Queue and blob output bindings: what happens to a value a function set on `Out[...]`.

Queue (host facts §3.4): the value is first shaped as the Python worker encodes it (str, bytes,
`func.QueueMessage` → `{"id","body"}` JSON, a list → a JSON array), then split as the host does:
a JSON array becomes one message per element, anything else one message. Messages are written
base64-encoded unless `messageEncoding` is `none`; a missing queue is created; a listener of this
process on that queue is woken at once.

Blob (§4.3): the path is resolved against the invocation's binding data (`{name}`, `{rand-guid}`,
`{DateTime}`, `%Setting%`); str is written as UTF-8, bytes as is, a file-like object is read; a
missing container is created; an existing blob is overwritten.

The handlers share one set of async SDK clients; call `aclose()` on any of them at shutdown.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import Any

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.functions import _abc as func_abc
from azure.storage.blob.aio import ContainerClient

from selfhost.config import HostConfig
from selfhost.triggers import watcher
from selfhost.triggers.base import OutputHandler
from selfhost.triggers.bindingpath import BindingExpressionError, format_template, split_blob_path
from selfhost.triggers.connections import StorageClients, resolve_connection, send_creating_queue
from selfhost.triggers.queueing import encode_message, validate_queue_name

__all__ = ["BlobOutput", "QueueOutput", "blob_payload", "make_output_handlers", "queue_payloads"]


def _message_json(msg: func_abc.QueueMessage) -> dict[str, Any]:
    body = msg.get_body()
    return {"id": msg.id, "body": body.decode("utf-8") if isinstance(body, bytes) else body}


def queue_payloads(value: Any) -> list[bytes]:
    """The message bodies a queue output value produces (worker encoding, then host split)."""
    if value is None:
        return []
    if isinstance(value, bytes | bytearray):
        return [bytes(value)]
    if isinstance(value, func_abc.QueueMessage):
        text = json.dumps(_message_json(value))
    elif isinstance(value, str):
        text = value
    elif isinstance(value, list | tuple):
        items: list[Any] = []
        for item in value:
            if isinstance(item, str):
                items.append(item)
            elif isinstance(item, func_abc.QueueMessage):
                items.append(_message_json(item))
            else:
                raise TypeError(
                    f"a queue output list holds str or func.QueueMessage, not {type(item).__name__}"
                )
        text = json.dumps(items)
    else:
        raise TypeError(
            f"a queue output takes str, bytes, func.QueueMessage or a list of them, not {type(value).__name__}"
        )
    try:
        parsed = json.loads(text)
    except ValueError:
        return [text.encode("utf-8")]
    if not isinstance(parsed, list):
        return [text.encode("utf-8")]
    # The host enqueues each element of a JSON array: strings as their text, others as JSON.
    return [(e if isinstance(e, str) else json.dumps(e)).encode("utf-8") for e in parsed]


def blob_payload(value: Any) -> bytes | None:
    """The bytes a blob output value produces (pylib `BlobConverter.encode`); None = not set."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    read = getattr(value, "read", None)
    if callable(read):
        return blob_payload(read())
    raise TypeError(f"a blob output takes str, bytes or a readable object, not {type(value).__name__}")


class _Handler:
    def __init__(self, clients: StorageClients, environ: Mapping[str, str] | None) -> None:
        self._clients = clients
        self._environ = environ

    async def aclose(self) -> None:
        await self._clients.close()


class QueueOutput(_Handler):
    """Output binding type `queue`."""

    def __init__(
        self, clients: StorageClients, encoding: str, environ: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(clients, environ)
        self._encoding = encoding

    async def write(self, binding: Mapping[str, Any], value: Any, binding_data: Mapping[str, Any]) -> None:
        payloads = queue_payloads(value)
        if not payloads:
            return
        name = validate_queue_name(
            format_template(str(binding["queueName"]), binding_data, environ=self._environ)
        )
        connection = resolve_connection(binding.get("connection"), self._environ)
        client = self._clients.queue_service(connection).get_queue_client(name)
        for body in payloads:
            await send_creating_queue(client, encode_message(body, self._encoding))
        watcher.notify_enqueued(client.url)


class BlobOutput(_Handler):
    """Output binding type `blob`."""

    async def write(self, binding: Mapping[str, Any], value: Any, binding_data: Mapping[str, Any]) -> None:
        data = blob_payload(value)
        if data is None:
            return
        path = format_template(str(binding["path"]), binding_data, environ=self._environ)
        container, name = split_blob_path(path)
        if not name:
            raise BindingExpressionError(f"blob output path {path!r} names no blob")
        connection = resolve_connection(binding.get("connection"), self._environ)
        await _upload(self._clients.blob_service(connection).get_container_client(container), name, data)


async def _upload(container: ContainerClient, name: str, data: bytes) -> None:
    try:
        await container.upload_blob(name, data, overwrite=True)
    except ResourceNotFoundError:
        with contextlib.suppress(ResourceExistsError):
            await container.create_container()
        await container.upload_blob(name, data, overwrite=True)


def make_output_handlers(
    config: HostConfig, environ: Mapping[str, str] | None = None
) -> dict[str, OutputHandler]:
    """Handlers by binding type, sharing one set of clients (closed by any handler's `aclose`)."""
    clients = StorageClients()
    env = os.environ if environ is None else environ
    return {
        "queue": QueueOutput(clients, config.queues.message_encoding, env),
        "blob": BlobOutput(clients, env),
    }
