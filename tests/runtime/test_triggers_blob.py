"""Blob trigger listener, in-process, against a real Azurite: latency, receipts, restarts, poison."""

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
from azure.storage.blob.aio import BlobServiceClient, ContainerClient
from azure.storage.queue.aio import QueueServiceClient

from selfhost.config import HostConfig
from selfhost.triggers.blob import POISON_QUEUE, BlobListener
from selfhost.triggers.receipts import HOSTS_CONTAINER, receipt_blob_name
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


@pytest.fixture
def container() -> str:
    return f"in-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def config(tmp_path: Path) -> HostConfig:
    # A host id of its own per test, so receipts of other tests never interfere.
    return host_config(tmp_path, host_id=f"h{uuid.uuid4().hex[:8]}", max_dequeue_count=3)


def blob_fn(path: str) -> Any:
    return function_info("onblob", {"type": "blobTrigger", "name": "blob", "path": path, "connection": ""})


@asynccontextmanager
async def storage(env: dict[str, str], name: str) -> AsyncIterator[ContainerClient]:
    async with BlobServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as service:
        client = service.get_container_client(name)
        if not await client.exists():
            await client.create_container()
        yield client


async def receipt_metadata(
    env: dict[str, str], config: HostConfig, container: str, name: str, etag: str
) -> Any:
    async with storage(env, HOSTS_CONTAINER) as hosts:
        blob = receipt_blob_name(config.host_id, "Host.Functions.onblob", etag, container, name)
        return (await hosts.get_blob_client(blob).get_blob_properties()).metadata


def test_new_blob_fires_within_2s_once_and_again_when_overwritten(
    env: dict[str, str], container: str, config: HostConfig
) -> None:
    invoker = FakeInvoker()

    async def main() -> None:
        async with (
            storage(env, container) as c,
            listening(
                BlobListener(
                    blob_fn(container + "/docs/{name}.txt"), invoker, config, FakeClock(), environ=env
                )
            ),
        ):
            await asyncio.sleep(0.3)
            loop = asyncio.get_running_loop()
            started = loop.time()
            await c.upload_blob("docs/a.txt", b"first", metadata={"k": "v"})
            await c.upload_blob("docs/skip.bin", b"not matching")
            await eventually(lambda: invoker.calls, timeout=5)
            assert loop.time() - started < 2.0
            await asyncio.sleep(2.5)
            assert len(invoker.calls) == 1  # once only, although scanned again and again
            await c.upload_blob("docs/a.txt", b"second", overwrite=True)
            await eventually(lambda: len(invoker.calls) == 2, timeout=5)
            props = await c.get_blob_client("docs/a.txt").get_blob_properties()
            assert (await receipt_metadata(env, config, container, "docs/a.txt", props.etag)) == {}
            async with storage(env, HOSTS_CONTAINER) as hosts:
                names = [
                    b.name async for b in hosts.list_blobs(name_starts_with=f"blobreceipts/{config.host_id}/")
                ]
            # The real host's layout, quoted ETag included: one receipt per blob version.
            assert len(names) == 2
            assert (
                f"blobreceipts/{config.host_id}/Host.Functions.onblob/{props.etag}/{container}/docs/a.txt"
                in names
            )
            assert props.etag.startswith('"')

    run_async(main())
    first, second = (c.kwargs["blob"] for c in invoker.calls)
    assert first.name == f"{container}/docs/a.txt"
    assert first.read() == b"first" and second.read() == b"second"
    assert first.length == 5 and first.metadata == {"k": "v"}
    assert first.uri.endswith(f"/{container}/docs/a.txt")
    assert first.blob_properties["ContentLength"] == 5
    assert invoker.calls[0].binding_data["name"] == "a"
    assert invoker.calls[0].binding_data["BlobTrigger"] == f"{container}/docs/a.txt"


def test_restart_does_not_refire_but_picks_up_blobs_added_while_down(
    env: dict[str, str], container: str, config: HostConfig
) -> None:
    invoker = FakeInvoker()
    fn = blob_fn(container + "/{name}")

    async def main() -> None:
        async with storage(env, container) as c:
            await c.upload_blob("old.txt", b"old")
            async with listening(BlobListener(fn, invoker, config, FakeClock(), environ=env)):
                await eventually(lambda: len(invoker.calls) == 1, timeout=5)
            await c.upload_blob("new.txt", b"new")  # written while the host is down
            async with listening(BlobListener(fn, invoker, config, FakeClock(), environ=env)):
                await eventually(lambda: len(invoker.calls) == 2, timeout=5)
                await asyncio.sleep(2.0)

    run_async(main())
    assert [c.kwargs["blob"].name for c in invoker.calls] == [f"{container}/old.txt", f"{container}/new.txt"]


def test_interrupted_invocation_fires_again_after_restart(
    env: dict[str, str], container: str, config: HostConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(BlobListener, "drain_timeout_s", 0.1)
    slow = FakeInvoker(duration=30)
    fast = FakeInvoker()
    fn = blob_fn(container + "/{name}")

    async def main() -> None:
        async with storage(env, container) as c:
            await c.upload_blob("a.txt", b"a")
            async with listening(BlobListener(fn, slow, config, FakeClock(), environ=env)):
                await eventually(lambda: slow.calls, timeout=5)
            # Stopped (as by a crash) mid-invocation: the receipt must still be incomplete.
            props = await c.get_blob_client("a.txt").get_blob_properties()
            assert "Incomplete" in await receipt_metadata(env, config, container, "a.txt", props.etag)
            async with listening(BlobListener(fn, fast, config, FakeClock(), environ=env)):
                await eventually(lambda: fast.calls, timeout=5)
                await asyncio.sleep(0.3)
            assert await receipt_metadata(env, config, container, "a.txt", props.etag) == {}

    run_async(main())
    assert len(fast.calls) == 1


def test_failures_are_retried_then_poisoned(env: dict[str, str], container: str, config: HostConfig) -> None:
    invoker = FakeInvoker(fail_times=1000)

    async def main() -> list[dict[str, Any]]:
        async with (
            storage(env, container) as c,
            listening(
                BlobListener(blob_fn(container + "/{name}"), invoker, config, FakeClock(), environ=env)
            ),
        ):
            await c.upload_blob("bad.txt", b"x")
            etag = (await c.get_blob_client("bad.txt").get_blob_properties()).etag
            async with QueueServiceClient.from_connection_string(env["AzureWebJobsStorage"]) as qs:
                poison = qs.get_queue_client(POISON_QUEUE)

                async def poisoned() -> list[dict[str, Any]]:
                    if not await queue_exists(poison):
                        return []
                    peeked = await poison.peek_messages(max_messages=32)
                    records = [json.loads(base64.b64decode(str(m.content))) for m in peeked]
                    return [r for r in records if r["ContainerName"] == container]

                await eventually_async(poisoned, message="no poison record for the blob")
                await asyncio.sleep(1.5)  # no further attempts once poisoned: checked below
                records = await poisoned()  # re-read: still exactly one record
            assert await receipt_metadata(env, config, container, "bad.txt", etag) == {}
            for r in records:
                r["ETagMatches"] = r.pop("ETag") == etag
            return records

    records = run_async(main())
    assert len(invoker.calls) == 3
    assert records == [
        {
            "Type": "BlobTrigger",
            "FunctionId": "Host.Functions.onblob",
            "BlobType": "BlockBlob",
            "ContainerName": container,
            "BlobName": "bad.txt",
            "ETagMatches": True,
        }
    ]


def test_missing_container_is_waited_for(env: dict[str, str], container: str, config: HostConfig) -> None:
    invoker = FakeInvoker()

    async def main() -> None:
        async with listening(
            BlobListener(blob_fn(container + "/{name}"), invoker, config, FakeClock(), environ=env)
        ):
            await asyncio.sleep(1.2)
            async with storage(env, container) as c:
                await c.upload_blob("late.txt", b"late")
            await eventually(lambda: invoker.calls, timeout=5)

    run_async(main())
    assert [c.kwargs["blob"].name for c in invoker.calls] == [f"{container}/late.txt"]


def test_admin_invoke_runs_once_on_the_named_blob(
    env: dict[str, str], container: str, config: HostConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    invoker = FakeInvoker()
    monkeypatch.setattr(BlobListener, "scan_interval_s", 3600)  # one scan at start (empty), then none

    async def main() -> None:
        async with storage(env, container) as c:
            listener = BlobListener(
                blob_fn(container + "/{name}.txt"), invoker, config, FakeClock(), environ=env
            )
            async with listening(listener):
                await asyncio.sleep(0.3)
                await c.upload_blob("x.txt", b"payload")
                await listener.admin_invoke(f"{container}/x.txt")
                with pytest.raises(ValueError):
                    await listener.admin_invoke("other/x.txt")

    run_async(main())
    assert [(c.kwargs["blob"].read(), c.binding_data["name"]) for c in invoker.calls] == [(b"payload", "x")]
