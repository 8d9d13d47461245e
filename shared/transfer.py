"""Move one item of a batch to its destination: streamed, resumable, in flat memory.

`transfer_to_blob(source, item, container, blob_name, job_id=...)`:

1. Stat the item: size, content type, version.
2. If the blob is already committed by this transfer (its metadata names the same transfer key
   and the size matches), return at once: a re-run after a crash between the commit and the
   activity's return costs two requests.
3. Choose the block size (BLOCK_SIZE; larger only past MAX_BLOCKS blocks) and the block ids: a
   digest of (job id, item, version, block size) and the block index, all of one length (Azure
   requires it). An attempt that runs again stages the same ids, so it replaces its blocks.
4. Resume: the leading blocks already staged (uncommitted, expected id and size) are kept, and
   reading starts after them. Without a version nothing is kept: a changed item could not be
   told from the one that was staged.
5. Stream the rest, one block at a time: fill a block from the source's chunks, stage it (Put
   Block, MD5-checked by the service), with at most `concurrency` blocks in flight. Memory is
   about (concurrency + 1) blocks, whatever the item's size.
6. Check the bytes read against the stat size, then commit the block list with the content type
   and metadata (`job_id`, `source_version`, `transfer_key`). Only now does the blob appear,
   whole; a cancel or crash before leaves nothing visible (staged blocks expire in a week, or
   `discard_transfer` drops them).
7. Check the committed size (TransientError if it differs).

`transfer_to_put` hands the item's stream, length and content type to a PUT callable (the
caller binds the URL); it checks that the whole item was sent. Progress goes to `progress(bytes_done)` every
`progress_every` bytes and at the end; raising from it stops the transfer (nothing is committed).
Messages and logs show an item URL without its credentials (`redact_url`). No framework
imports here: activities call these with their dependencies.
"""

from __future__ import annotations

import hashlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import BlobBlock, BlobClient, ContainerClient, ContentSettings

from shared.destinations.blob import storage_errors
from shared.errors import PermanentError, TransientError
from shared.items.base import ItemInfo, ItemSource
from shared.sources import redact_url

__all__ = [
    "BLOCK_SIZE",
    "MAX_BLOCKS",
    "PROGRESS_EVERY",
    "ItemStream",
    "PutCallable",
    "TransferResult",
    "choose_block_size",
    "discard_transfer",
    "transfer_block_id",
    "transfer_key",
    "transfer_to_blob",
    "transfer_to_put",
]

log = logging.getLogger(__name__)

MiB: Final = 1024 * 1024
# 8 MiB blocks: 128 Put Block calls per GiB, 390 GiB within Azure's 50,000-block limit, and with
# two in flight plus one filling, about 24 MiB of buffers.
BLOCK_SIZE: Final = 8 * MiB
MAX_BLOCKS: Final = 50_000
MAX_BLOCK_SIZE: Final = 4000 * MiB  # Azure's limit for one Put Block (API 2019-12-12 and later)
PROGRESS_EVERY: Final = 16 * MiB
# Two blocks in flight keep the connection busy while the next block is read; more buys little
# against one storage account and costs a block of memory each.
CONCURRENCY: Final = 2
_KEY_CHARS: Final = 24
_INDEX_DIGITS: Final = 6  # MAX_BLOCKS - 1 fits; ids are "<24 hex>-<6 digits>", 31 characters

Progress = Callable[[int], None]


@dataclass(frozen=True)
class TransferResult:
    """What one transfer did. `resumed_bytes` were staged by an earlier attempt and not read
    again; `already_done` means the blob was committed by an earlier attempt of this transfer."""

    item: str
    size: int
    content_type: str
    source_version: str
    blocks: int = 0
    resumed_bytes: int = 0
    already_done: bool = False
    etag: str = ""


def transfer_key(job_id: str, item: str, version: str, block_size: int) -> str:
    """The digest every block id of one transfer starts with: a new version (or block size)
    gives new ids, so blocks staged from other content are never committed."""
    text = f"{job_id}\n{item}\n{version}\n{block_size}"
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:_KEY_CHARS]


def transfer_block_id(key: str, index: int) -> str:
    if not 0 <= index < MAX_BLOCKS:
        raise PermanentError(f"an item needs more than {MAX_BLOCKS} blocks")
    return f"{key}-{index:0{_INDEX_DIGITS}d}"


def choose_block_size(size: int, preferred: int = BLOCK_SIZE) -> int:
    """`preferred`, or the smallest whole MiB that fits a `size`-byte item in MAX_BLOCKS blocks."""
    if size <= preferred * MAX_BLOCKS:
        return preferred
    needed = -(-size // MAX_BLOCKS)
    block_size = -(-needed // MiB) * MiB
    if block_size > MAX_BLOCK_SIZE:
        raise PermanentError(f"an item of {size} bytes is larger than a block blob can hold")
    return block_size


def transfer_to_blob(
    source: ItemSource,
    item: str,
    container: ContainerClient,
    blob_name: str,
    *,
    job_id: str,
    progress: Progress | None = None,
    progress_every: int = PROGRESS_EVERY,
    block_size: int = BLOCK_SIZE,
    concurrency: int = CONCURRENCY,
) -> TransferResult:
    """Copy `item` into the block blob `blob_name` of `container` (which must exist); see the
    module docstring for the steps. Raises TransientError or PermanentError (shared.errors)."""
    info = source.stat(item)
    block_size = choose_block_size(info.size, block_size)
    key = transfer_key(job_id, item, info.version, block_size)
    blob = container.get_blob_client(blob_name)
    done = _committed(blob, blob_name, key, info)
    if done is not None:
        log.info("job %s: item %s already in %s (%d bytes)", job_id, redact_url(item), blob_name, done.size)
        return done
    kept = _resumable_blocks(blob, blob_name, key, info, block_size)
    offset = kept * block_size
    reporter = _Reporter(progress, progress_every, offset)
    stager = _Stager(blob, blob_name, key, kept, offset, concurrency=concurrency, reporter=reporter)
    with stager:
        if not (info.size_known and offset >= info.size):
            with source.open(item, offset=offset, version=info.version or None) as chunks:
                _fill_blocks(chunks, block_size, stager)
        stager.finish()
    total = stager.bytes_done
    reporter.final(total)
    if info.size_known and total != info.size:
        raise TransientError(
            f"item {redact_url(item)}: {total} bytes read but {info.size} listed; it changed while read"
        )
    metadata = {"job_id": _ascii(job_id), "source_version": _ascii(info.version), "transfer_key": key}
    with storage_errors("commit block list", blob_name):
        blob.commit_block_list(
            [BlobBlock(block_id=transfer_block_id(key, i)) for i in range(stager.blocks)],
            content_settings=ContentSettings(content_type=info.content_type),
            metadata=metadata,
        )
    with storage_errors("read properties of blob", blob_name):
        props = blob.get_blob_properties()
    if props.size != total:
        raise TransientError(f"blob {blob_name}: {props.size} bytes committed but {total} sent")
    log.info(
        "job %s: item %s -> %s: %d bytes in %d blocks (%d resumed)",
        job_id,
        redact_url(item),
        blob_name,
        total,
        stager.blocks,
        offset,
    )
    return TransferResult(
        item=item,
        size=total,
        content_type=info.content_type,
        source_version=info.version,
        blocks=stager.blocks,
        resumed_bytes=offset,
        etag=str(props.etag),
    )


def discard_transfer(container: ContainerClient, blob_name: str, *, job_id: str) -> None:
    """Undo a cancelled transfer: delete the blob if this job committed it; drop blocks staged
    for a blob that was never committed. A blob another writer committed is left alone (its
    staged blocks, if any, expire with Azure's one-week garbage collection)."""
    blob = container.get_blob_client(blob_name)
    with storage_errors("discard blob", blob_name):
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            _drop_staged(blob)
            return
        if props.metadata.get("job_id") == _ascii(job_id):
            try:
                blob.delete_blob()
            except ResourceNotFoundError:
                return  # deleted meanwhile: what was asked


def _drop_staged(blob: BlobClient) -> None:
    try:
        _, uncommitted = blob.get_block_list("uncommitted")
    except ResourceNotFoundError:
        return  # no blob and no staged block: nothing to drop
    if uncommitted:
        blob.commit_block_list([])  # an empty commit drops the staged blocks...
        blob.delete_blob()  # ...and leaves an empty blob, which goes too


class ItemStream:
    """An item's chunks as a body for a PUT client: iterate it (httpx `content=`) or `read(n)`
    it like a raw file (at most n bytes, b"" at the end). Counts the bytes taken and reports
    progress."""

    def __init__(self, chunks: Iterator[bytes], reporter: _Reporter) -> None:
        self._chunks = chunks
        self._reporter = reporter
        self._pending = b""  # the rest of a chunk a short read left, from `_pos`
        self._pos = 0
        self.bytes_read = 0
        self.exhausted = False

    def at_end(self) -> bool:
        """True when every byte was taken. A reader that stopped at the length it was given did
        not ask for the end: this asks the source (which may then fail, e.g. 'changed')."""
        return self._take(-1) is None

    def __iter__(self) -> Iterator[bytes]:
        while (data := self._take(-1)) is not None:
            yield self._count(data)

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            parts = []
            while (data := self._take(-1)) is not None:
                parts.append(data)
            return self._count(b"".join(parts))
        data = self._take(size) if size else b""
        return self._count(data or b"")

    def _take(self, size: int) -> bytes | None:
        """Up to `size` bytes (-1: a whole chunk) of what is left, None at the end."""
        while self._pos >= len(self._pending):
            if self.exhausted:
                return None
            data = next(self._chunks, None)
            if data is None:
                self.exhausted = True
                return None
            self._pending, self._pos = data, 0
        end = len(self._pending) if size < 0 else self._pos + size
        data = self._pending[self._pos : end] if self._pos or end < len(self._pending) else self._pending
        self._pos += len(data)
        return data

    def _count(self, data: bytes) -> bytes:
        self.bytes_read += len(data)
        self._reporter.add(self.bytes_read)
        return data


# (body, length, content type) -> anything: `HttpPutDestination.put` with its URL bound.
PutCallable = Callable[[ItemStream, int, str], object]


def transfer_to_put(
    source: ItemSource,
    item: str,
    put: PutCallable,
    *,
    progress: Progress | None = None,
    progress_every: int = PROGRESS_EVERY,
) -> TransferResult:
    """Open `item` and hand its stream, length and content type to `put`, e.g.
    `functools.partial(destination.put, url)`. A PUT needs the length up front (Content-Length):
    an item of unknown size is a PermanentError. The PUT must take the whole stream:
    TransientError if it returned with bytes left, or the item changed while read."""
    info = source.stat(item)
    if not info.size_known:
        raise PermanentError(
            f"item {redact_url(item)}: its size is unknown (no Content-Length); a PUT needs it"
        )
    reporter = _Reporter(progress, progress_every, 0)
    with source.open(item, version=info.version or None) as chunks:
        body = ItemStream(iter(chunks), reporter)
        put(body, info.size, info.content_type)
        if not body.at_end():
            raise TransientError(
                f"item {redact_url(item)}: the PUT returned after {body.bytes_read} bytes, before the end"
            )
    if body.bytes_read != info.size:
        raise TransientError(
            f"item {redact_url(item)}: {body.bytes_read} bytes sent but {info.size} listed; it changed while read"
        )
    reporter.final(body.bytes_read)
    return TransferResult(
        item=item, size=body.bytes_read, content_type=info.content_type, source_version=info.version
    )


class _Reporter:
    """Calls `progress` when `every` more bytes are done, and once with the total."""

    def __init__(self, progress: Progress | None, every: int, start: int) -> None:
        self._progress = progress
        self._every = max(1, every)
        self._last = start

    def add(self, done: int) -> None:
        if self._progress is not None and done - self._last >= self._every:
            self._last = done
            self._progress(done)

    def final(self, done: int) -> None:
        if self._progress is not None and done != self._last:
            self._last = done
            self._progress(done)


class _Stager:
    """Stages blocks in order with at most `concurrency` in flight; counts what is done."""

    def __init__(
        self,
        blob: BlobClient,
        blob_name: str,
        key: str,
        kept_blocks: int,
        kept_bytes: int,
        *,
        concurrency: int,
        reporter: _Reporter,
    ) -> None:
        self._blob = blob
        self._name = blob_name
        self._key = key
        self._reporter = reporter
        self._limit = max(1, concurrency)
        self._pool = ThreadPoolExecutor(self._limit, thread_name_prefix="stage") if self._limit > 1 else None
        self._in_flight: deque[tuple[Future[None], int]] = deque()
        self.blocks = kept_blocks  # block ids handed out so far, the kept ones included
        self.bytes_done = kept_bytes  # bytes of the blocks staged so far, the kept ones included

    def __enter__(self) -> _Stager:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            # On an error (or a raise from progress) blocks queued are dropped and those in
            # flight finish: a Put Block is all or nothing, so a re-run keeps what completed.
            self._pool.shutdown(wait=True, cancel_futures=True)

    def stage(self, data: bytes) -> None:
        block_id = transfer_block_id(self._key, self.blocks)
        self.blocks += 1
        if self._pool is None:
            self._put(block_id, data)
            self._done(len(data))
            return
        while len(self._in_flight) >= self._limit:
            self._wait_oldest()
        self._in_flight.append((self._pool.submit(self._put, block_id, data), len(data)))

    def finish(self) -> None:
        while self._in_flight:
            self._wait_oldest()

    def _wait_oldest(self) -> None:
        future, size = self._in_flight.popleft()
        future.result()
        self._done(size)

    def _done(self, size: int) -> None:
        self.bytes_done += size
        self._reporter.add(self.bytes_done)

    def _put(self, block_id: str, data: bytes) -> None:
        with storage_errors("stage block", self._name):
            self._blob.stage_block(block_id, data, length=len(data), validate_content=True)


def _fill_blocks(chunks: Iterator[bytes], block_size: int, stager: _Stager) -> None:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= block_size:
            with memoryview(buffer) as view:
                data = bytes(view[:block_size])
            del buffer[:block_size]
            stager.stage(data)
    if buffer:
        stager.stage(bytes(buffer))


def _committed(blob: BlobClient, blob_name: str, key: str, info: ItemInfo) -> TransferResult | None:
    with storage_errors("read properties of blob", blob_name):
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
    if props.metadata.get("transfer_key") != key or (info.size_known and props.size != info.size):
        return None
    return TransferResult(
        item=info.name,
        size=int(props.size),
        content_type=info.content_type,
        source_version=info.version,
        already_done=True,
        etag=str(props.etag),
    )


def _resumable_blocks(blob: BlobClient, blob_name: str, key: str, info: ItemInfo, block_size: int) -> int:
    """How many leading blocks an earlier attempt staged that can be kept."""
    if not info.version:
        return 0
    with storage_errors("get block list", blob_name):
        try:
            _, uncommitted = blob.get_block_list("uncommitted")
        except ResourceNotFoundError:
            return 0
    sizes = {str(block.id): int(block.size) for block in uncommitted}
    kept = 0
    while True:
        expected = block_size
        if info.size_known:
            expected = min(block_size, info.size - kept * block_size)
            if expected <= 0:
                return kept
        if sizes.get(transfer_block_id(key, kept)) != expected:
            return kept
        kept += 1


def _ascii(text: str) -> str:
    """A metadata value: printable ASCII (HTTP header rules), at most 256 characters."""
    return "".join(c if " " <= c <= "~" else "?" for c in text)[:256]
