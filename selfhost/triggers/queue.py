"""Queue trigger listener (host facts §3): polling, batches, leases, retries and poison messages.

Algorithm (one poll task plus one task per message, all on the host's event loop):
1. Receive up to batchSize messages with a 10-minute visibility (lease). A missing queue or a
   storage error is an empty poll, not a failure. An empty poll waits the randomized exponential
   backoff (100 ms … maxPollingInterval); a non-empty one polls again as soon as at most
   newBatchThreshold messages are still running. An enqueue by this process ends the wait early.
2. Per message: dequeueCount > maxDequeueCount → poison without invoking (a crash left it);
   undecodable base64 → poison at once; otherwise invoke with the lease renewed every 5 min.
3. Success → delete. Failure → dequeueCount >= maxDequeueCount: copy the raw text to
   `<queue>-poison` (created if missing) and delete; else make it visible again after
   visibilityTimeout. A queue whose name ends in `-poison` (or too long to suffix) has no poison
   queue: a failed message is then left to reappear when its lease expires, as in the SDK.
A crash mid-run loses nothing: the lease expires and the message comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

from azure.core.exceptions import AzureError, ResourceNotFoundError
from azure.functions.queue import QueueMessage as FuncQueueMessage
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from selfhost.config import ConfigError, HostConfig
from selfhost.functions import Clock, FunctionInfo, Invoker
from selfhost.triggers import watcher
from selfhost.triggers.backoff import Backoff
from selfhost.triggers.bindingpath import resolve_setting_references
from selfhost.triggers.connections import (
    StorageClients,
    StorageConnectionError,
    resolve_connection,
    send_creating_queue,
)
from selfhost.triggers.queueing import (
    InvalidMessageEncoding,
    decode_message,
    poison_queue_name,
    queue_settings,
    validate_queue_name,
)
from selfhost.triggers.tasks import cancel_and_wait, drain, start_logged, track

__all__ = ["QueueListener"]

log = logging.getLogger(__name__)

LEASE_S = 600  # visibility while a function runs (SDK: 10 min, renewed at half-time)


def _binding_data(msg: QueueMessage, text: str) -> dict[str, Any]:
    data: dict[str, Any] = {}
    with contextlib.suppress(ValueError):
        # Properties of a JSON object message are binding data too ({name} in output paths).
        parsed = json.loads(text)
        if isinstance(parsed, dict):
            data.update(parsed)
    data.update(
        {
            "QueueTrigger": text,
            "Id": msg.id,
            "DequeueCount": msg.dequeue_count,
            "ExpirationTime": msg.expires_on.isoformat() if msg.expires_on else None,
            "InsertionTime": msg.inserted_on.isoformat() if msg.inserted_on else None,
            "NextVisibleTime": msg.next_visible_on.isoformat() if msg.next_visible_on else None,
            "PopReceipt": msg.pop_receipt,
        }
    )
    return data


class QueueListener:
    """Runs one queue-triggered function (see the module docstring)."""

    renew_interval_s: ClassVar[float] = LEASE_S / 2
    min_polling_interval_s: ClassVar[float] = 0.1
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
        # Configuration errors are reported by start(), so the host can log them and keep
        # running the other functions (the real host marks just that function as in error).
        self._config_error: Exception | None = None
        try:
            self.queue_name = validate_queue_name(
                resolve_setting_references(str(fn.trigger.get("queueName")), environ)
            )
            self.poison_name = poison_queue_name(self.queue_name)
            self.settings = queue_settings(config.queues)
            self._connection = resolve_connection(fn.trigger.get("connection"), environ)
        except (ConfigError, ValueError, StorageConnectionError) as exc:
            self._config_error = exc
        self._clients = StorageClients()
        self._queue: QueueClient | None = None
        self._poll_task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()

    async def start(self) -> None:
        if self._config_error is not None:
            raise self._config_error
        service = self._clients.queue_service(self._connection)
        self._queue = service.get_queue_client(self.queue_name)
        watcher.register(self._queue.url, self._wake)
        self._poll_task = start_logged(self._poll_loop(), f"queue:{self._fn.name}")

    async def stop(self) -> None:
        task, self._poll_task = self._poll_task, None
        await cancel_and_wait(task)
        # Let running functions finish (their messages get deleted); cancel stragglers,
        # whose messages simply reappear when the lease expires.
        await drain(self._in_flight, self.drain_timeout_s)
        if self._queue is not None:
            watcher.unregister(self._queue.url, self._wake)
        await self._clients.close()

    async def _poll_loop(self) -> None:
        backoff = Backoff(
            self.min_polling_interval_s,
            max(self.min_polling_interval_s, self.settings.max_polling_interval_s),
        )
        while True:
            try:
                found = await self._poll_once()
            except ResourceNotFoundError:
                found = False  # the queue does not exist (yet): keep polling, not an error
            except AzureError as exc:
                log.warning("Polling queue %s for %s failed: %s", self.queue_name, self._fn.name, exc)
                found = False
            if found:
                backoff.reset()
                while len(self._in_flight) > self.settings.new_batch_threshold:
                    await asyncio.wait(set(self._in_flight), return_when=asyncio.FIRST_COMPLETED)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), backoff.next_delay())
            self._wake.clear()

    async def _poll_once(self) -> bool:
        assert self._queue is not None
        pager = self._queue.receive_messages(
            messages_per_page=self.settings.batch_size,
            max_messages=self.settings.batch_size,
            visibility_timeout=LEASE_S,
        )
        messages: list[QueueMessage] = []
        async for page in pager.by_page():
            messages = [m async for m in page]
            break  # one request per poll
        for msg in messages:
            track(self._in_flight, self._process(msg), f"queue:{self._fn.name}:{msg.id}")
        return bool(messages)

    async def _process(self, msg: QueueMessage) -> None:
        text = str(msg.content or "")
        if msg.dequeue_count is not None and msg.dequeue_count > self.settings.max_dequeue_count:
            await self._settle(msg, ok=False, poison_now=True)
            return
        try:
            body = decode_message(text, self.settings.message_encoding)
        except InvalidMessageEncoding as exc:
            log.warning("Queue %s message %s: %s; moving it to poison", self.queue_name, msg.id, exc)
            await self._settle(msg, ok=False, poison_now=True)
            return
        request = FuncQueueMessage(  # type: ignore[no-untyped-call]  # the library's __init__ is untyped
            id=msg.id,
            body=body,
            dequeue_count=msg.dequeue_count,
            expiration_time=msg.expires_on,
            insertion_time=msg.inserted_on,
            time_next_visible=msg.next_visible_on,
            pop_receipt=msg.pop_receipt,
        )
        renewer = asyncio.create_task(self._keep_leased(msg))
        try:
            await self._invoker.invoke(
                self._fn,
                {self._arg: request},
                binding_data=_binding_data(msg, body.decode("utf-8", errors="replace")),
            )
            ok = True
        except Exception as exc:  # noqa: BLE001 - any error from user code is a failed attempt
            # The invoker has logged the traceback; this line says what happens to the message.
            log.warning(
                "Function %s failed on message %s (dequeue count %s of %d): %s",
                self._fn.name,
                msg.id,
                msg.dequeue_count,
                self.settings.max_dequeue_count,
                exc,
            )
            ok = False
        finally:
            await cancel_and_wait(renewer)
        await self._settle(msg, ok=ok, poison_now=False)

    async def _keep_leased(self, msg: QueueMessage) -> None:
        assert self._queue is not None
        while True:
            await asyncio.sleep(self.renew_interval_s)
            try:
                updated = await self._queue.update_message(
                    msg.id, msg.pop_receipt, visibility_timeout=LEASE_S
                )
            except AzureError as exc:
                log.warning("Could not renew the lease of message %s: %s", msg.id, exc)
                return
            msg.pop_receipt = updated.pop_receipt  # later calls need the newest receipt

    async def _settle(self, msg: QueueMessage, *, ok: bool, poison_now: bool) -> None:
        assert self._queue is not None
        count = msg.dequeue_count or 0
        try:
            if ok:
                await self._queue.delete_message(msg.id, msg.pop_receipt)
            elif poison_now or count >= self.settings.max_dequeue_count:
                await self._move_to_poison(msg)
            else:
                await self._queue.update_message(
                    msg.id, msg.pop_receipt, visibility_timeout=round(self.settings.visibility_timeout_s)
                )
        except AzureError as exc:
            # Usually the lease expired and another receive owns the message now.
            log.warning("Could not settle message %s on queue %s: %s", msg.id, self.queue_name, exc)

    async def _move_to_poison(self, msg: QueueMessage) -> None:
        assert self._queue is not None
        if self.poison_name is None:
            log.warning(
                "Message %s failed; queue %s has no poison queue, leaving it leased", msg.id, self.queue_name
            )
            return
        log.warning(
            "Message has reached MaxDequeueCount of %d. Moving message to queue '%s'.",
            self.settings.max_dequeue_count,
            self.poison_name,
        )
        poison = self._clients.queue_service(self._connection).get_queue_client(self.poison_name)
        await send_creating_queue(poison, msg.content)
        await self._queue.delete_message(msg.id, msg.pop_receipt)
