"""Pure parts of shared.transfer (block ids, block sizes) and `transfer_to_put` with fake PUTs.

The PUT callables here are fakes that consume the body as httpx (iterating) or a file-like client
(`read(n)`) would; the item source is a real LocalItemSource on a temporary folder.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import PermanentError, TransientError
from shared.items.base import CHUNK_SIZE, ItemInfo
from shared.items.local import LocalItemSource
from shared.transfer import (
    BLOCK_SIZE,
    MAX_BLOCKS,
    ItemStream,
    choose_block_size,
    transfer_block_id,
    transfer_key,
    transfer_to_put,
)

pytestmark = pytest.mark.unit

MiB = 1024 * 1024


@given(
    job=st.text(min_size=1, max_size=40),
    item=st.text(min_size=1, max_size=300),
    version=st.text(max_size=60),
    index=st.integers(0, MAX_BLOCKS - 1),
)
def test_block_ids_have_one_length_and_fit_azure(job: str, item: str, version: str, index: int) -> None:
    block = transfer_block_id(transfer_key(job, item, version, BLOCK_SIZE), index)
    assert len(block) == 31 and block.isascii()  # 64 bytes at most before base64; all equal
    assert block == transfer_block_id(transfer_key(job, item, version, BLOCK_SIZE), index)


def test_block_ids_differ_by_job_item_version_size_and_index() -> None:
    keys = {
        transfer_key("j1", "a", "v1", BLOCK_SIZE),
        transfer_key("j2", "a", "v1", BLOCK_SIZE),
        transfer_key("j1", "b", "v1", BLOCK_SIZE),
        transfer_key("j1", "a", "v2", BLOCK_SIZE),
        transfer_key("j1", "a", "v1", 2 * BLOCK_SIZE),
    }
    assert len(keys) == 5
    key = transfer_key("j1", "a", "v1", BLOCK_SIZE)
    assert len({transfer_block_id(key, i) for i in range(100)}) == 100
    with pytest.raises(PermanentError, match="more than 50000 blocks"):
        transfer_block_id(key, MAX_BLOCKS)


def test_blocks_grow_only_when_the_item_would_need_more_than_azure_allows() -> None:
    assert choose_block_size(0) == BLOCK_SIZE
    assert choose_block_size(-1) == BLOCK_SIZE  # unknown size
    assert choose_block_size(BLOCK_SIZE * MAX_BLOCKS) == BLOCK_SIZE
    bigger = choose_block_size(BLOCK_SIZE * MAX_BLOCKS + 1)
    assert bigger == 9 * MiB and bigger * MAX_BLOCKS >= BLOCK_SIZE * MAX_BLOCKS + 1
    with pytest.raises(PermanentError, match="larger than a block blob"):
        choose_block_size(4001 * MiB * MAX_BLOCKS)


@pytest.fixture
def items(tmp_path: Path) -> LocalItemSource:
    (tmp_path / "big.bin").write_bytes(os.urandom(2 * CHUNK_SIZE + 123))
    (tmp_path / "notes.txt").write_bytes(b"hello\n")
    return LocalItemSource(tmp_path)


def _content(items: LocalItemSource, name: str) -> bytes:
    return (items.root / name).read_bytes()


def test_put_gets_the_stream_length_and_content_type(items: LocalItemSource) -> None:
    got: dict[str, object] = {}

    def put(body: ItemStream, length: int, content_type: str) -> None:
        got.update(body=b"".join(body), length=length, content_type=content_type)  # as httpx does

    progress: list[int] = []
    result = transfer_to_put(items, "big.bin", put, progress=progress.append, progress_every=CHUNK_SIZE)
    assert got == {
        "body": _content(items, "big.bin"),
        "length": 2 * CHUNK_SIZE + 123,
        "content_type": "application/octet-stream",
    }
    assert progress == [CHUNK_SIZE, 2 * CHUNK_SIZE, 2 * CHUNK_SIZE + 123]
    assert result.size == 2 * CHUNK_SIZE + 123 and result.source_version == items.stat("big.bin").version


def test_put_clients_that_read_like_a_file_get_every_byte(items: LocalItemSource) -> None:
    received = bytearray()

    def put(body: ItemStream, length: int, content_type: str) -> None:
        while data := body.read(64 * 1024):
            assert len(data) <= 64 * 1024
            received.extend(data)

    transfer_to_put(items, "big.bin", put)
    assert bytes(received) == _content(items, "big.bin")

    def read_all(body: ItemStream, length: int, content_type: str) -> None:
        received[:] = body.read()

    assert transfer_to_put(items, "notes.txt", read_all).content_type == "text/plain"
    assert bytes(received) == b"hello\n"


def test_a_put_that_stops_early_is_a_transient_failure(items: LocalItemSource) -> None:
    def half(body: ItemStream, length: int, content_type: str) -> None:
        body.read(1000)

    with pytest.raises(TransientError, match="before the end"):
        transfer_to_put(items, "big.bin", half)


def test_an_item_of_unknown_size_cannot_be_put(tmp_path: Path) -> None:
    class UnknownSize(LocalItemSource):
        def stat(self, item: str) -> ItemInfo:
            return replace(super().stat(item), size=-1)

    (tmp_path / "f.bin").write_bytes(b"abc")
    calls: list[int] = []
    with pytest.raises(PermanentError, match="size is unknown"):
        transfer_to_put(UnknownSize(tmp_path), "f.bin", lambda body, length, _: calls.append(length))
    assert calls == []


def test_a_put_that_reads_exactly_the_length_is_complete(items: LocalItemSource) -> None:
    def exact(body: ItemStream, length: int, content_type: str) -> None:
        left = length
        while left:
            left -= len(body.read(left))  # never asks past the length, so never sees b""

    assert transfer_to_put(items, "big.bin", exact).size == 2 * CHUNK_SIZE + 123


def test_an_item_that_grew_while_put_is_a_transient_failure(items: LocalItemSource) -> None:
    def put(body: ItemStream, length: int, content_type: str) -> None:
        first = next(iter(body))
        with open(items.root / "big.bin", "ab") as file:
            file.write(b"more")
        assert first and list(body)

    with pytest.raises(TransientError, match="changed"):
        transfer_to_put(items, "big.bin", put)
