"""Blob trigger listener (host facts §4): container scan, receipts, retries and poison records.

Algorithm:
1. Every `scan_interval_s` (1 s; the real host scans every 10 s) list the container under the
   pattern's literal prefix. A blob whose name and ETag were already handled in this process is
   skipped without a request; so is one that does not match the path pattern.
2. For a new name or ETag, look up the receipt (receipts.py). Complete → done. Missing → create
   it incomplete with If-None-Match: *. Incomplete (just created, or left by a crash) → dispatch.
3. Dispatch (at most maxDegreeOfParallelism at once): download the blob *at that ETag* (gone or
   changed → drop: the new version has its own receipt), invoke, and on failure retry after
   visibilityTimeout, up to maxDequeueCount attempts; then send a poison record to queue
   `webjobs-blobtrigger-poison` in the blob's account.
4. Only then complete the receipt.

Deliberate difference from the real host: it completes the receipt when it has enqueued the blob
to its durable queue `azure-webjobs-blobtrigger-{hostId}`, and retries come from that queue.
Here the work list is in memory, so the receipt is completed only after the invocation succeeded
or was poisoned: a crash (or a stop) leaves it incomplete and the blob fires again after restart.
The attempt count is in memory too and restarts from 1 after a crash.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.functions.blob import InputStream
from azure.storage.blob import BlobProperties
from azure.storage.blob.aio import ContainerClient

from selfhost.config import ConfigError, HostConfig
from selfhost.functions import Clock, FunctionInfo, Invoker
from selfhost.triggers.bindingpath import BlobPathPattern
from selfhost.triggers.connections import (
    StorageClients,
    StorageConnectionError,
    resolve_connection,
    send_creating_queue,
)
from selfhost.triggers.queueing import encode_message, queue_settings
from selfhost.triggers.receipts import HOSTS_CONTAINER, Receipts, ReceiptState, normalize_etag
from selfhost.triggers.tasks import cancel_and_wait, drain, start_logged, track

__all__ = ["POISON_QUEUE", "BlobListener", "blob_properties_dict"]

log = logging.getLogger(__name__)

POISON_QUEUE = "webjobs-blobtrigger-poison"


@dataclass(frozen=True)
class _Work:
    name: str
    etag: str
    blob_type: str
    captures: dict[str, str]


def blob_properties_dict(props: BlobProperties) -> dict[str, Any]:
    """Blob properties under the .NET names the worker reads (`ContentLength`, else `Length`)."""
    settings = props.content_settings
    md5 = bytes(settings.content_md5) if settings and settings.content_md5 else None
    return {
        "ContentLength": props.size,
        "Length": props.size,  # the legacy name older workers read
        "ContentType": settings.content_type if settings else None,
        "ContentEncoding": settings.content_encoding if settings else None,
        "ContentLanguage": settings.content_language if settings else None,
        "ContentMD5": md5.hex() if md5 else None,
        "ETag": normalize_etag(props.etag) if props.etag else None,
        "LastModified": props.last_modified.isoformat() if props.last_modified else None,
        "CreatedOn": props.creation_time.isoformat() if props.creation_time else None,
        "BlobType": str(getattr(props.blob_type, "value", props.blob_type)),
    }


class BlobListener:
    """Runs one blob-triggered function (see the module docstring)."""

    scan_interval_s: ClassVar[float] = 1.0
    drain_timeout_s: ClassVar[float] = 10.0

    def __init__(
        self,
        fn: FunctionInfo,
        invoker: Invoker,
        config: HostConfig,
        clock: Clock,
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self._fn = fn
        self._invoker = invoker
        self._arg = str(fn.trigger.get("name"))
        self.function_id = f"Host.Functions.{fn.name}"
        self._host_id = config.host_id
        # Configuration errors are reported by start(), so the host can log them and keep
        # running the other functions (the real host marks just that function as in error).
        self._config_error: Exception | None = None
        try:
            self._configure(fn, config, environ)
        except (ConfigError, ValueError, StorageConnectionError) as exc:
            self._config_error = exc
        self._clients = StorageClients()
        self._container: ContainerClient | None = None
        self._receipts: Receipts | None = None
        self._known: dict[str, str] = {}  # blob name -> ETag already complete or dispatched
        self._in_flight: set[asyncio.Task[None]] = set()
        self._slots: asyncio.Semaphore | None = None
        self._stopping = False
        self._scan_task: asyncio.Task[None] | None = None

    def _configure(self, fn: FunctionInfo, config: HostConfig, environ: Mapping[str, str] | None) -> None:
        self.pattern = BlobPathPattern.parse(str(fn.trigger.get("path")), environ)
        self._connection = resolve_connection(fn.trigger.get("connection"), environ)
        try:
            # Receipts live in the host storage account, the blobs in the binding's account.
            self._host_connection = resolve_connection(None, environ)
        except StorageConnectionError:
            self._host_connection = self._connection
        queues = queue_settings(config.queues)
        self.max_attempts = queues.max_dequeue_count
        self.retry_delay_s = queues.visibility_timeout_s
        self._encoding = queues.message_encoding
        blobs = (config.raw.get("extensions") or {}).get("blobs") or {}
        self.parallelism = int(blobs.get("maxDegreeOfParallelism", 8 * (os.cpu_count() or 1)))

    async def start(self) -> None:
        if self._config_error is not None:
            raise self._config_error
        blob_service = self._clients.blob_service(self._connection)
        self._container = blob_service.get_container_client(self.pattern.container)
        hosts = self._clients.blob_service(self._host_connection).get_container_client(HOSTS_CONTAINER)
        self._receipts = Receipts(hosts, self._host_id, self.function_id)
        # No storage call here: if storage is down at start, scanning retries until it is up
        # (the hosts container is created on the first receipt).
        self._slots = asyncio.Semaphore(max(1, self.parallelism))
        self._scan_task = start_logged(self._scan_loop(), f"blob:{self._fn.name}")

    async def stop(self) -> None:
        self._stopping = True
        task, self._scan_task = self._scan_task, None
        await cancel_and_wait(task)
        # Running invocations may finish (and complete their receipts); anything cut off
        # keeps an incomplete receipt and fires again on the next start.
        await drain(self._in_flight, self.drain_timeout_s)
        await self._clients.close()

    async def _scan_loop(self) -> None:
        while True:
            try:
                await self.scan_once()
            except ResourceNotFoundError:
                pass  # the container does not exist yet: not an error, keep scanning
            except AzureError as exc:
                log.warning(
                    "Scanning container %s for %s failed: %s", self.pattern.container, self._fn.name, exc
                )
            await asyncio.sleep(self.scan_interval_s)

    async def scan_once(self) -> None:
        """One pass over the container: dispatch every blob version without a complete receipt."""
        assert self._container is not None
        present: set[str] = set()
        async for blob in self._container.list_blobs(name_starts_with=self.pattern.prefix or None):
            present.add(blob.name)
            etag = normalize_etag(blob.etag)
            if self._known.get(blob.name) == etag:
                continue
            captures = self.pattern.match(blob.name)
            if captures is None:
                continue
            blob_type = str(getattr(blob.blob_type, "value", blob.blob_type))
            if await self._claim(blob.name, etag):
                track(self._in_flight, self._handle(_Work(blob.name, etag, blob_type, captures)))
            self._known[blob.name] = etag
        # Forget deleted blobs so the map does not grow without bound.
        for name in [n for n in self._known if n not in present]:
            del self._known[name]

    async def _claim(self, name: str, etag: str) -> bool:
        assert self._receipts is not None
        container = self.pattern.container
        state = await self._receipts.state(etag, container, name)
        if state is ReceiptState.MISSING and not await self._receipts.try_create_incomplete(
            etag, container, name
        ):
            state = await self._receipts.state(etag, container, name)
        return state is not ReceiptState.COMPLETE

    async def _handle(self, work: _Work) -> None:
        assert self._receipts is not None and self._slots is not None
        for attempt in range(1, self.max_attempts + 1):
            async with self._slots:
                if self._stopping:
                    return  # not started: the incomplete receipt makes it fire after restart
                outcome = await self._attempt(work, attempt)
            if outcome != "failed":
                break
            if attempt < self.max_attempts:
                await asyncio.sleep(self.retry_delay_s)
        else:
            if not await self._poison(work):
                return
        try:
            await self._receipts.complete(work.etag, self.pattern.container, work.name)
        except AzureError as exc:
            log.warning("Could not complete the receipt of %s/%s: %s", self.pattern.container, work.name, exc)

    async def _attempt(self, work: _Work, attempt: int) -> str:
        """One try: "done", "dropped" (blob gone or changed) or "failed"."""
        try:
            await self._invoke(work.name, work.etag, work.captures)
        except (ResourceNotFoundError, ResourceModifiedError):
            log.info(
                "Blob %s/%s was deleted or changed before %s ran; skipping this version",
                self.pattern.container,
                work.name,
                self._fn.name,
            )
            return "dropped"
        except AzureError as exc:
            log.warning(
                "Reading blob %s/%s failed (attempt %d): %s", self.pattern.container, work.name, attempt, exc
            )
            return "failed"
        except Exception as exc:  # noqa: BLE001 - any error from user code is a failed attempt
            # The invoker has logged the traceback; this line says what happens to the blob.
            log.warning(
                "Function %s failed on blob %s/%s (attempt %d of %d): %s",
                self._fn.name,
                self.pattern.container,
                work.name,
                attempt,
                self.max_attempts,
                exc,
            )
            return "failed"
        return "done"

    async def _invoke(self, name: str, etag: str | None, captures: Mapping[str, str]) -> None:
        """Read the blob (at `etag` if given) and invoke the function with it; errors propagate."""
        assert self._container is not None
        client = self._container.get_blob_client(name)
        if etag is None:
            downloader = await client.download_blob()
        else:
            downloader = await client.download_blob(etag=etag, match_condition=MatchConditions.IfNotModified)
        data = await downloader.readall()
        props = downloader.properties
        path = f"{self.pattern.container}/{name}"
        properties = blob_properties_dict(props)
        metadata = dict(props.metadata or {})
        stream = InputStream(
            data=data,
            name=path,
            uri=client.url,
            length=props.size,
            blob_properties=properties,
            metadata=metadata,
        )
        binding_data: dict[str, Any] = {
            **captures,
            "BlobTrigger": path,
            "Uri": client.url,
            "Properties": properties,
            "Metadata": metadata,
        }
        await self._invoker.invoke(self._fn, {self._arg: stream}, binding_data=binding_data)

    async def admin_invoke(self, text: str | None) -> None:
        """`POST /admin/functions/{name}` with `{"input": "container/blob"}`: run once on that blob.

        Used by selfhost.admin_invoke. No receipt is written, as with the real host's admin API.
        """
        container, _, name = (text or "").strip().lstrip("/").partition("/")
        if container != self.pattern.container or not name:
            raise ValueError(
                f"input must be a blob path '{self.pattern.container}/<blob name>', got {text!r}"
            )
        captures = self.pattern.match(name)
        if captures is None:
            raise ValueError(f"blob {text!r} does not match the trigger path of '{self._fn.name}'")
        await self._invoke(name, None, captures)

    async def _poison(self, work: _Work) -> bool:
        record = {
            "Type": "BlobTrigger",
            "FunctionId": self.function_id,
            "BlobType": work.blob_type,
            "ContainerName": self.pattern.container,
            "BlobName": work.name,
            "ETag": work.etag,
        }
        log.warning(
            "Blob %s/%s failed %d times; writing a poison record to queue '%s'",
            self.pattern.container,
            work.name,
            self.max_attempts,
            POISON_QUEUE,
        )
        queue = self._clients.queue_service(self._connection).get_queue_client(POISON_QUEUE)
        text = encode_message(json.dumps(record).encode("utf-8"), self._encoding)
        try:
            await send_creating_queue(queue, text)
        except AzureError as exc:
            # Completing the receipt anyway would lose the blob silently; leaving it incomplete
            # makes it fire again after a restart, which is the lesser evil.
            log.error(
                "Could not write the poison record for %s/%s: %s", self.pattern.container, work.name, exc
            )
            return False
        return True
