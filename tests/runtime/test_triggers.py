"""Queue trigger listener and queue/blob output handlers, in-process, against a real Azurite."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob.aio import BlobServiceClient
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from selfhost.config import HostConfig
from selfhost.triggers.outputs import make_output_handlers
from selfhost.triggers.queue import QueueListener
from tests.support.trigger_fakes import (
    FakeClock,
    FakeInvoker,
    eventually,
    eventually_async,
    function_info,
    host_config,
    listening,
    queue_exists,
    run_async,
)

pytestmark = pytest.mark.azurite


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def queue_fn(queue_name: str) -> Any:
    return function_info(
        "work",
        {"type": "queueTrigger", "name": "msg", "queueName": queue_name, "connection": "AzureWebJobsStorage"},
    )


@asynccontextmanager
async def queues(env: dict[str, str]) -> AsyncIterator[QueueServiceClient]:
    async with QueueServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as service:
        yield service


async def texts(queue: QueueClient) -> list[str]:
    if not await queue_exists(queue):
        return []
    return [str(m.content) for m in await queue.peek_messages(max_messages=32)]


async def message_count(queue: QueueClient) -> int:
    return int((await queue.get_queue_properties()).approximate_message_count or 0)


def fast(tmp_path: Path, **queues: Any) -> HostConfig:
    return host_config(tmp_path, max_polling_interval_s=0.2, **queues)


def test_message_is_processed_and_deleted(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("q")
    invoker = FakeInvoker()

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message(b64(json.dumps({"name": "cat"})))
            async with listening(
                QueueListener(queue_fn(name), invoker, fast(tmp_path), FakeClock(), environ=env)
            ):
                await eventually(lambda: invoker.calls, message="queue message not processed")
                await eventually_empty(queue)

    run_async(main())
    assert len(invoker.calls) == 1
    msg = invoker.calls[0].kwargs["msg"]
    assert msg.get_json() == {"name": "cat"}
    assert msg.dequeue_count == 1
    assert msg.id and msg.pop_receipt and msg.insertion_time and msg.expiration_time and msg.time_next_visible
    data = invoker.calls[0].binding_data
    assert data["QueueTrigger"] == '{"name": "cat"}' and data["name"] == "cat" and data["DequeueCount"] == 1


async def eventually_empty(queue: QueueClient) -> None:
    async def empty() -> bool:
        return await message_count(queue) == 0

    await eventually_async(empty, message="message was not deleted")


def test_failing_message_goes_to_poison_after_max_dequeue_count(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("q")
    invoker = FakeInvoker(fail_times=1000)

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message(b64("boom"))
            config = fast(tmp_path, max_dequeue_count=3)
            async with listening(QueueListener(queue_fn(name), invoker, config, FakeClock(), environ=env)):
                poison = service.get_queue_client(name + "-poison")
                await eventually_async(lambda: texts(poison), message="nothing in the poison queue")
                assert await texts(poison) == [b64("boom")]  # copied as received
                await eventually_empty(queue)
                await asyncio.sleep(0.3)

    run_async(main())
    assert [c.kwargs["msg"].dequeue_count for c in invoker.calls] == [1, 2, 3]


def test_invalid_base64_goes_to_poison_without_invocation(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("q")
    invoker = FakeInvoker()

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message("this is not base64!")
            async with listening(
                QueueListener(queue_fn(name), invoker, fast(tmp_path), FakeClock(), environ=env)
            ):
                poison = service.get_queue_client(name + "-poison")
                await eventually_async(lambda: texts(poison), message="nothing in the poison queue")
                assert await texts(poison) == ["this is not base64!"]  # copied as received
                await eventually_empty(queue)

    run_async(main())
    assert invoker.calls == []


def test_missing_queue_is_waited_for_and_encoding_none(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("q")
    invoker = FakeInvoker()

    async def main() -> None:
        config = fast(tmp_path, message_encoding="none")
        async with (
            listening(QueueListener(queue_fn(name), invoker, config, FakeClock(), environ=env)),
            queues(env) as service,
        ):
            await asyncio.sleep(0.5)  # several polls of a queue that does not exist
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message("plain text")
            await eventually(lambda: invoker.calls, message="message on a late-created queue")

    run_async(main())
    assert invoker.calls[0].kwargs["msg"].get_body() == b"plain text"


def test_batch_runs_in_parallel(tmp_path: Path, env: dict[str, str]) -> None:
    name = unique("q")
    invoker = FakeInvoker(duration=0.5)

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            for i in range(4):
                await queue.send_message(b64(str(i)))
            config = fast(tmp_path, batch_size=4)
            async with listening(QueueListener(queue_fn(name), invoker, config, FakeClock(), environ=env)):
                await eventually(lambda: len(invoker.calls) == 4 and invoker.running == 0)

    run_async(main())
    assert invoker.max_running >= 2


def test_output_to_a_listened_queue_wakes_the_listener(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    name = unique("q")
    invoker = FakeInvoker()
    monkeypatch.setattr(QueueListener, "min_polling_interval_s", 1.0)
    config = host_config(tmp_path, max_polling_interval_s=10.0)

    async def main() -> float:
        handlers = make_output_handlers(config, environ=env)
        async with queues(env) as service:
            await service.get_queue_client(name).create_queue()
            async with listening(QueueListener(queue_fn(name), invoker, config, FakeClock(), environ=env)):
                await asyncio.sleep(1.5)  # past the first 1 s wait: now in a ~3 s backoff wait
                loop = asyncio.get_running_loop()
                sent = loop.time()
                await handlers["queue"].write({"queueName": name, "connection": ""}, "ping", {})
                await eventually(lambda: invoker.calls, timeout=5)
                latency = loop.time() - sent
        await handlers["queue"].aclose()  # type: ignore[attr-defined]
        return latency

    assert run_async(main()) < 1.0


def test_queue_output_splits_arrays_encodes_and_creates_the_queue(
    tmp_path: Path, env: dict[str, str]
) -> None:
    suffix = uuid.uuid4().hex[:8]

    async def main() -> list[str]:
        handlers = make_output_handlers(host_config(tmp_path), environ=env)
        binding = {"type": "queue", "queueName": "out-{kind}-" + suffix, "connection": "AzureWebJobsStorage"}
        await handlers["queue"].write(binding, '["a", {"b": 1}]', {"Kind": "orders"})
        await handlers["queue"].write(binding, b"raw", {"kind": "orders"})
        await handlers["queue"].aclose()  # type: ignore[attr-defined]
        async with queues(env) as service:
            return await texts(service.get_queue_client(f"out-orders-{suffix}"))

    assert run_async(main()) == [b64("a"), b64('{"b": 1}'), b64("raw")]


def test_blob_output_writes_to_the_resolved_path(tmp_path: Path, env: dict[str, str]) -> None:
    container = unique("out")

    async def main() -> dict[str, bytes]:
        handlers = make_output_handlers(host_config(tmp_path), environ=env)
        binding = {"type": "blob", "path": container + "/{name}.copy", "connection": ""}
        await handlers["blob"].write(binding, "héllo", {"name": "dir/a"})
        await handlers["blob"].write(binding, b"\x00\x01", {"name": "b"})
        await handlers["blob"].write(binding, None, {"name": "unset"})
        await handlers["blob"].aclose()  # type: ignore[attr-defined]
        async with BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as service:
            c = service.get_container_client(container)
            return {b.name: await (await c.download_blob(b.name)).readall() async for b in c.list_blobs()}

    assert run_async(main()) == {"dir/a.copy": "héllo".encode(), "b.copy": b"\x00\x01"}


def test_long_run_renews_the_lease_and_still_deletes(
    tmp_path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each renewal changes the pop receipt; deleting with a stale one would fail (404) and the
    # message would come back. Renew every 0.2 s during a 1 s run.
    monkeypatch.setattr(QueueListener, "renew_interval_s", 0.2)
    name = unique("q")
    invoker = FakeInvoker(duration=1.0)

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message(b64("slow"))
            async with listening(
                QueueListener(queue_fn(name), invoker, fast(tmp_path), FakeClock(), environ=env)
            ):
                await eventually(lambda: invoker.calls and invoker.running == 0, timeout=10)
                await eventually_empty(queue)

    run_async(main())
    assert len(invoker.calls) == 1


def test_message_over_max_dequeue_count_is_poisoned_without_invocation(
    tmp_path: Path, env: dict[str, str]
) -> None:
    name = unique("q")
    invoker = FakeInvoker()

    async def main() -> None:
        async with queues(env) as service:
            queue = service.get_queue_client(name)
            await queue.create_queue()
            await queue.send_message(b64("left by a crash"))
            for _ in range(2):  # two receives whose leases "expired" (as after crashes)
                async for page in queue.receive_messages(visibility_timeout=1, max_messages=1).by_page():
                    msgs = [m async for m in page]
                    assert len(msgs) == 1
                    await queue.update_message(msgs[0].id, msgs[0].pop_receipt, visibility_timeout=0)
            config = fast(tmp_path, max_dequeue_count=2)
            async with listening(QueueListener(queue_fn(name), invoker, config, FakeClock(), environ=env)):
                poison = service.get_queue_client(name + "-poison")
                await eventually_async(lambda: texts(poison), message="nothing in the poison queue")
                assert await texts(poison) == [b64("left by a crash")]  # copied as received
                await eventually_empty(queue)

    run_async(main())
    assert invoker.calls == []
