"""`shared.transfer` against Azurite: blob, local file and URL items into block blobs.

What is checked: byte identity (sha256, streamed), content type and metadata, nothing visible
before the commit, a crash mid-transfer (a raise from the progress callback) followed by a re-run
that keeps the staged blocks and commits no duplicate, a changed source starting over, cancel
clean-up, and a 1 GiB blob copied with the process RSS growing by well under 150 MiB.
"""

from __future__ import annotations

import ctypes
import gc
import hashlib
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest
from azure.storage.blob import BlobBlock, ContainerClient

from shared.destinations.blob import container_client
from shared.errors import PermanentError
from shared.items.blob import BlobItemSource
from shared.items.http import HttpItemSource
from shared.items.local import LocalItemSource
from shared.outbound import OutboundPolicy
from shared.sources import make_http_client
from shared.transfer import (
    BLOCK_SIZE,
    discard_transfer,
    transfer_block_id,
    transfer_key,
    transfer_to_blob,
)
from tests.support.azurite import Azurite
from tests.support.file_server import FileServer, serve_files

pytestmark = pytest.mark.azurite

MiB = 1024 * 1024
JOB = "job-7f3a"


class Crash(Exception):
    """What the progress callback raises to stop a transfer half way."""


def _container(azurite: Azurite) -> ContainerClient:
    container = container_client(azurite.connection_string, f"t{uuid.uuid4().hex[:16]}")
    container.create_container()
    return container


@pytest.fixture
def source(azurite: Azurite) -> ContainerClient:
    return _container(azurite)


@pytest.fixture
def destination(azurite: Azurite) -> ContainerClient:
    return _container(azurite)


def _data(size: int, seed: int = 0) -> bytes:
    """Bytes that differ at every offset of every block, so a misplaced block changes the digest."""
    block = hashlib.sha256(f"{seed}".encode()).digest() * 2048  # 64 KiB
    return b"".join(
        i.to_bytes(8, "big") + block[8:] for i in range(-(-size // len(block)))
    )[:size]  # fmt: skip


def _read(container: ContainerClient, name: str) -> bytes:
    return container.download_blob(name).readall()


def _sha256_of_blob(container: ContainerClient, name: str) -> str:
    digest = hashlib.sha256()
    for chunk in container.download_blob(name, max_concurrency=2).chunks():
        digest.update(chunk)
    return digest.hexdigest()


def _crash_after(bytes_done: int) -> Callable[[int], None]:
    def progress(done: int) -> None:
        if done >= bytes_done:
            raise Crash(f"crash after {done} bytes")

    return progress


def test_many_small_blobs_are_copied_byte_for_byte(
    source: ContainerClient, destination: ContainerClient
) -> None:
    block = 64 * 1024
    sizes = [0, 1, 1000, block - 1, block, block + 1, 3 * block, 5 * block + 17] + [
        (n * 7919) % (4 * block) for n in range(1, 33)
    ]
    items = {f"in/{n:03d}/file-{size}.bin": _data(size, seed=n) for n, size in enumerate(sizes)}
    for name, data in items.items():
        source.upload_blob(name, data, content_type="application/x-test")
    items_source = BlobItemSource(source)
    with ThreadPoolExecutor(4) as pool:
        results = list(
            pool.map(
                lambda name: transfer_to_blob(
                    items_source, name, destination, f"out/{name}", job_id=JOB, block_size=block
                ),
                items,
            )
        )
    for (name, data), result in zip(items.items(), results, strict=True):
        assert _read(destination, f"out/{name}") == data
        assert result.size == len(data)
        assert result.blocks == -(-len(data) // block)
        props = destination.get_blob_client(f"out/{name}").get_blob_properties()
        assert props.content_settings.content_type == "application/x-test"
        assert props.metadata["job_id"] == JOB
        assert props.metadata["source_version"] == source.get_blob_client(name).get_blob_properties().etag


def test_the_blob_is_invisible_until_the_commit(
    source: ContainerClient, destination: ContainerClient
) -> None:
    source.upload_blob("big.bin", _data(3 * MiB))
    target = destination.get_blob_client("copy.bin")
    seen: list[tuple[bool, int]] = []

    def progress(done: int) -> None:
        _, uncommitted = target.get_block_list("uncommitted")
        seen.append((target.exists(), len(uncommitted)))

    transfer_to_blob(
        BlobItemSource(source), "big.bin", destination, "copy.bin",
        job_id=JOB, progress=progress, progress_every=1, block_size=MiB, concurrency=1,
    )  # fmt: skip
    assert seen == [(False, 1), (False, 2), (False, 3)]
    assert _read(destination, "copy.bin") == _data(3 * MiB)


def test_a_crash_mid_transfer_then_a_rerun_completes_without_duplicate_blocks(
    source: ContainerClient, destination: ContainerClient
) -> None:
    size = 10 * MiB + 12345
    source.upload_blob("big.bin", _data(size))
    items = BlobItemSource(source)
    with pytest.raises(Crash):
        transfer_to_blob(
            items, "big.bin", destination, "copy.bin",
            job_id=JOB, progress=_crash_after(4 * MiB), progress_every=1, block_size=MiB,
        )  # fmt: skip
    target = destination.get_blob_client("copy.bin")
    assert not target.exists()  # nothing half-written is visible
    _, staged = target.get_block_list("uncommitted")
    assert len(staged) >= 4

    progress: list[int] = []
    result = transfer_to_blob(
        items, "big.bin", destination, "copy.bin", job_id=JOB, progress=progress.append, block_size=MiB
    )
    assert result.resumed_bytes >= 4 * MiB  # the staged blocks were kept, not read again
    assert progress[-1] == size
    assert _read(destination, "copy.bin") == _data(size)
    committed, uncommitted = target.get_block_list("all")
    key = transfer_key(JOB, "big.bin", source.get_blob_client("big.bin").get_blob_properties().etag, MiB)
    assert [b.id for b in committed] == [transfer_block_id(key, i) for i in range(11)]
    assert sum(b.size for b in committed) == size
    assert uncommitted == []

    again = transfer_to_blob(items, "big.bin", destination, "copy.bin", job_id=JOB, block_size=MiB)
    assert again.already_done and again.size == size and again.etag == result.etag


def test_a_source_changed_after_a_crash_is_copied_again_from_the_start(
    source: ContainerClient, destination: ContainerClient
) -> None:
    source.upload_blob("f.bin", _data(5 * MiB, seed=1))
    items = BlobItemSource(source)
    with pytest.raises(Crash):
        transfer_to_blob(
            items, "f.bin", destination, "copy.bin",
            job_id=JOB, progress=_crash_after(2 * MiB), progress_every=1, block_size=MiB,
        )  # fmt: skip
    source.upload_blob("f.bin", _data(5 * MiB, seed=2), overwrite=True)
    result = transfer_to_blob(items, "f.bin", destination, "copy.bin", job_id=JOB, block_size=MiB)
    assert result.resumed_bytes == 0
    assert _read(destination, "copy.bin") == _data(5 * MiB, seed=2)
    assert destination.get_blob_client("copy.bin").get_block_list("uncommitted")[1] == []


def test_a_local_file_is_copied_with_its_content_type_and_version(
    tmp_path: Path, destination: ContainerClient
) -> None:
    data = b"id,name\n" + b"".join(f"{i},name-{i}\n".encode() for i in range(300_000))
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "q1.csv").write_bytes(data)
    items = LocalItemSource(tmp_path)
    result = transfer_to_blob(items, "reports/q1.csv", destination, "in/q1.csv", job_id=JOB)
    assert result.size == len(data) and result.blocks == -(-len(data) // BLOCK_SIZE)
    assert _read(destination, "in/q1.csv") == data
    props = destination.get_blob_client("in/q1.csv").get_blob_properties()
    assert props.content_settings.content_type == "text/csv"
    stat = os.stat(tmp_path / "reports" / "q1.csv")
    assert props.metadata["source_version"] == f"{stat.st_mtime_ns}-{stat.st_size}"


def test_an_empty_local_file_becomes_an_empty_blob(tmp_path: Path, destination: ContainerClient) -> None:
    (tmp_path / "empty.txt").write_bytes(b"")
    result = transfer_to_blob(LocalItemSource(tmp_path), "empty.txt", destination, "empty.txt", job_id=JOB)
    assert result.size == 0 and result.blocks == 0
    assert _read(destination, "empty.txt") == b""


@pytest.fixture
def files() -> Iterator[FileServer]:
    with serve_files() as server:
        yield server


@pytest.fixture
def url_items() -> Iterator[HttpItemSource]:
    with make_http_client(OutboundPolicy.parse("127.0.0.1")) as client:
        yield HttpItemSource(client)


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "no-range"])
def test_a_url_item_resumes_after_a_crash(
    files: FileServer, url_items: HttpItemSource, destination: ContainerClient, ranges: bool
) -> None:
    files.ranges = ranges
    data = _data(6 * MiB + 5)
    url = files.put("/export/data.bin", data)
    with pytest.raises(Crash):
        transfer_to_blob(
            url_items, url, destination, "data.bin",
            job_id=JOB, progress=_crash_after(3 * MiB), progress_every=1, block_size=MiB,
        )  # fmt: skip
    result = transfer_to_blob(url_items, url, destination, "data.bin", job_id=JOB, block_size=MiB)
    assert result.resumed_bytes >= 3 * MiB
    assert _read(destination, "data.bin") == data
    last_get = [headers for method, _, headers in files.requests if method == "GET"][-1]
    assert last_get["Range"] == f"bytes={result.resumed_bytes}-"
    assert last_get["If-Range"] == files.files["/export/data.bin"].etag


def test_a_url_item_without_length_streams_anyway(
    files: FileServer, url_items: HttpItemSource, destination: ContainerClient
) -> None:
    data = _data(3 * MiB + 1)
    url = files.put("/stream.bin", data, "application/x-stream", length=False)
    assert url_items.stat(url).size == -1
    result = transfer_to_blob(url_items, url, destination, "stream.bin", job_id=JOB, block_size=MiB)
    assert result.size == len(data)
    assert _read(destination, "stream.bin") == data


def test_discard_drops_staged_blocks_and_the_jobs_own_blob_only(
    source: ContainerClient, destination: ContainerClient
) -> None:
    source.upload_blob("f.bin", _data(3 * MiB))
    items = BlobItemSource(source)
    with pytest.raises(Crash):
        transfer_to_blob(
            items, "f.bin", destination, "half.bin",
            job_id=JOB, progress=_crash_after(MiB), progress_every=1, block_size=MiB,
        )  # fmt: skip
    discard_transfer(destination, "half.bin", job_id=JOB)
    assert not destination.get_blob_client("half.bin").exists()

    transfer_to_blob(items, "f.bin", destination, "mine.bin", job_id=JOB)
    destination.upload_blob("theirs.bin", b"not ours", metadata={"job_id": "another-job"})
    discard_transfer(destination, "mine.bin", job_id=JOB)
    discard_transfer(destination, "theirs.bin", job_id=JOB)
    discard_transfer(destination, "never.bin", job_id=JOB)
    assert not destination.get_blob_client("mine.bin").exists()
    assert _read(destination, "theirs.bin") == b"not ours"


def test_a_missing_source_blob_or_container_is_permanent(
    azurite: Azurite, source: ContainerClient, destination: ContainerClient
) -> None:
    with pytest.raises(PermanentError, match="no such blob 'nope.bin'"):
        transfer_to_blob(BlobItemSource(source), "nope.bin", destination, "x.bin", job_id=JOB)
    missing = BlobItemSource.connect(
        azurite.connection_string, f"missing{uuid.uuid4().hex[:8]}", retry_total=0
    )
    with pytest.raises(PermanentError, match="no such container"):
        missing.stat("a.bin")
    assert not destination.get_blob_client("x.bin").exists()


# --- 1 GiB -------------------------------------------------------------------------------------


def _release_free_memory() -> None:
    """Hand freed heap back to the OS first (glibc keeps it), so the baseline does not depend on
    what earlier tests allocated and the growth measured is the transfer's own."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        return  # not glibc: the baseline includes whatever the allocator keeps


class _RssSampler:
    """The peak RSS of this process, sampled every 20 ms on a thread (and on each progress call)."""

    def __init__(self) -> None:
        _release_free_memory()
        self._process = psutil.Process()
        self.baseline = int(self._process.memory_info().rss)
        self.peak: int = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> None:
        self.peak = max(self.peak, int(self._process.memory_info().rss))

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.sample()

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()

    @property
    def growth(self) -> int:
        return self.peak - self.baseline


def _write_generated_blob(container: ContainerClient, name: str, size: int) -> str:
    """Stage `size` generated bytes as 8 MiB blocks (two in flight), commit; return the sha256."""
    blob = container.get_blob_client(name)
    digest = hashlib.sha256()
    base = _data(BLOCK_SIZE)
    ids: list[str] = []
    with ThreadPoolExecutor(2) as pool:
        pending = []
        for index in range(-(-size // BLOCK_SIZE)):
            block = index.to_bytes(8, "big") + base[8 : min(BLOCK_SIZE, size - index * BLOCK_SIZE)]
            digest.update(block)
            ids.append(f"{index:08d}")
            pending.append(pool.submit(blob.stage_block, ids[-1], block, length=len(block)))
            if len(pending) >= 2:
                pending.pop(0).result()
        for future in pending:
            future.result()
    blob.commit_block_list([BlobBlock(block_id=i) for i in ids])
    return digest.hexdigest()


@pytest.mark.slow
def test_a_one_gigabyte_blob_is_copied_in_flat_memory(
    source: ContainerClient, destination: ContainerClient
) -> None:
    size = 1024 * MiB
    started = time.monotonic()
    expected = _write_generated_blob(source, "one-gigabyte.bin", size)
    written = time.monotonic()
    progress: list[int] = []
    with _RssSampler() as rss:

        def record(done: int) -> None:
            progress.append(done)
            rss.sample()

        result = transfer_to_blob(
            BlobItemSource(source), "one-gigabyte.bin", destination, "copy/one-gigabyte.bin",
            job_id=JOB, progress=record,
        )  # fmt: skip
    copied = time.monotonic()
    assert result.size == size and result.blocks == size // BLOCK_SIZE
    assert progress[-1] == size and len(progress) <= size // MiB  # at most every few MB
    assert _sha256_of_blob(destination, "copy/one-gigabyte.bin") == expected
    print(
        f"\n1 GiB: source written in {written - started:.1f} s, copied in {copied - written:.1f} s "
        f"({size / MiB / (copied - written):.0f} MiB/s); RSS {rss.baseline / MiB:.0f} MiB before, "
        f"peak growth {rss.growth / MiB:.1f} MiB"
    )
    assert rss.growth < 150 * MiB
