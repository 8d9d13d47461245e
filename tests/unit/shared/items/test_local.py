"""LocalItemSource on a temporary root: refusals, reading in chunks, versions, the picker's listing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import PermanentError, TransientError, ValidationError
from shared.items.base import CHUNK_SIZE, validate_items
from shared.items.local import FOLDER_CONTENT_TYPE, LocalItemSource

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/ a.txt, data/b.csv, data/deep/c.json, and outside/secret.txt next to the root."""
    base = tmp_path / "root"
    (base / "data" / "deep").mkdir(parents=True)
    (base / "a.txt").write_bytes(b"alpha\n")
    (base / "data" / "b.csv").write_bytes(b"x,y\n1,2\n")
    (base / "data" / "deep" / "c.json").write_bytes(b"{}")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"not yours")
    return base


def _read(source: LocalItemSource, item: str, offset: int = 0, version: str | None = None) -> bytes:
    with source.open(item, offset=offset, version=version) as chunks:
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("", "non-empty"),
        ("../outside/secret.txt", "'..'"),
        ("data/../../outside/secret.txt", "'..'"),
        ("data/./b.csv", "'.'"),
        ("data//b.csv", "empty"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/win.ini", "absolute"),
        ("data\\b.csv", "separator"),
        ("a.txt\x00", "control"),
        ("x" * 1025, "1024"),
    ],
)
def test_names_that_can_never_be_read_are_refused_without_touching_the_disk(
    root: Path, item: str, message: str
) -> None:
    source = LocalItemSource(root)
    with pytest.raises(ValidationError, match=message) as caught:
        source.check(item)
    assert caught.value.field == "item"
    with pytest.raises(ValidationError, match=message):
        source.stat(item)
    with pytest.raises(ValidationError, match=message):
        _read(source, item)


def test_a_batch_names_the_index_of_its_bad_item(root: Path) -> None:
    with pytest.raises(ValidationError) as caught:
        validate_items(LocalItemSource(root), ["a.txt", "data/b.csv", "../x"])
    assert caught.value.field == "items[2]"
    validate_items(LocalItemSource(root), ["a.txt", "data/b.csv"])


def test_a_symlink_leading_outside_the_root_is_refused(root: Path) -> None:
    (root / "escape.txt").symlink_to(root.parent / "outside" / "secret.txt")
    (root / "escape-dir").symlink_to(root.parent / "outside", target_is_directory=True)
    source = LocalItemSource(root)
    for item in ("escape.txt", "escape-dir/secret.txt"):
        with pytest.raises(ValidationError, match="outside the local root"):
            source.stat(item)
        with pytest.raises(ValidationError, match="outside the local root"):
            _read(source, item)


def test_a_symlink_inside_the_root_is_followed(root: Path) -> None:
    (root / "latest.csv").symlink_to(root / "data" / "b.csv")
    source = LocalItemSource(root)
    assert source.stat("latest.csv").size == len(b"x,y\n1,2\n")
    assert _read(source, "latest.csv") == b"x,y\n1,2\n"


def test_folders_pipes_and_missing_files_are_not_items(root: Path) -> None:
    os.mkfifo(root / "pipe")
    source = LocalItemSource(root)
    with pytest.raises(ValidationError, match="is a folder"):
        source.stat("data")
    with pytest.raises(ValidationError, match="is a folder"):
        _read(source, "data")
    with pytest.raises(ValidationError, match="not a regular file"):
        source.stat("pipe")
    with pytest.raises(ValidationError, match="not a regular file"):
        _read(source, "pipe")  # opened without blocking, then refused
    with pytest.raises(PermanentError, match="no such file"):
        source.stat("data/missing.csv")


def test_the_root_itself_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(PermanentError, match="does not exist"):
        LocalItemSource(tmp_path / "nowhere")
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PermanentError, match="not a folder"):
        LocalItemSource(tmp_path / "file")


def test_stat_gives_size_content_type_and_a_version_of_mtime_and_size(root: Path) -> None:
    info = LocalItemSource(root).stat("data/b.csv")
    stat = os.stat(root / "data" / "b.csv")
    assert (info.name, info.size, info.content_type) == ("data/b.csv", 8, "text/csv")
    assert info.version == f"{stat.st_mtime_ns}-{stat.st_size}"
    assert LocalItemSource(root).stat("data/deep/c.json").content_type == "application/json"


def test_reading_is_in_chunks_from_an_offset(root: Path) -> None:
    data = os.urandom(2 * CHUNK_SIZE + 100)
    (root / "big.bin").write_bytes(data)
    source = LocalItemSource(root)
    with source.open("big.bin") as chunks:
        sizes = [len(chunk) for chunk in chunks]
    assert sizes == [CHUNK_SIZE, CHUNK_SIZE, 100]
    assert _read(source, "big.bin", offset=CHUNK_SIZE + 7) == data[CHUNK_SIZE + 7 :]
    assert _read(source, "big.bin", offset=len(data)) == b""


def test_a_file_changed_since_stat_or_while_read_fails_transiently(root: Path) -> None:
    source = LocalItemSource(root, chunk_size=4)
    version = source.stat("a.txt").version
    (root / "a.txt").write_bytes(b"changed, and longer\n")
    with pytest.raises(TransientError, match="changed since it was listed"):
        _read(source, "a.txt", version=version)

    version = source.stat("a.txt").version
    with (
        pytest.raises(TransientError, match="changed while being read"),
        source.open("a.txt", version=version) as chunks,
    ):
        next(chunks)
        with open(root / "a.txt", "ab") as file:
            file.write(b"appended\n")
        list(chunks)


def test_listing_one_folder_shows_files_and_subfolders(root: Path) -> None:
    listing = LocalItemSource(root).list("")
    assert [(e.name, e.size, e.content_type) for e in listing] == [
        ("a.txt", 6, "text/plain"),
        ("data/", -1, FOLDER_CONTENT_TYPE),
    ]
    assert [e.name for e in LocalItemSource(root).list("data/")] == ["data/b.csv", "data/deep/"]


def test_listing_recursively_and_by_name_prefix(root: Path) -> None:
    (root / "data" / "b-2.csv").write_bytes(b"")
    source = LocalItemSource(root)
    assert [e.name for e in source.list("", recursive=True)] == [
        "a.txt",
        "data/b-2.csv",
        "data/b.csv",
        "data/deep/c.json",
    ]
    assert [e.name for e in source.list("data/b", recursive=True)] == ["data/b-2.csv", "data/b.csv"]
    # Every listed name is one the source reads.
    for entry in source.list("", recursive=True):
        assert source.stat(entry.name) == entry


def test_listing_leaves_out_what_cannot_be_an_item(root: Path) -> None:
    os.mkfifo(root / "pipe")
    (root / "escape.txt").symlink_to(root.parent / "outside" / "secret.txt")
    (root / "loop").symlink_to(root, target_is_directory=True)
    (root / "inside.txt").symlink_to(root / "a.txt")
    (root / "back\\slash.txt").write_bytes(b"")
    names = [e.name for e in LocalItemSource(root).list("", recursive=True)]
    assert names == ["a.txt", "data/b.csv", "data/deep/c.json", "inside.txt"]


def test_listing_is_bounded_and_checks_its_prefix(root: Path) -> None:
    for n in range(6):
        (root / f"f{n}.txt").write_bytes(b"")
    source = LocalItemSource(root, max_entries=5)
    with pytest.raises(ValidationError, match="more than 5 entries") as caught:
        source.list("")
    assert caught.value.field == "prefix"
    assert [e.name for e in source.list("f1")] == ["f1.txt"]
    with pytest.raises(ValidationError, match="'..'"):
        source.list("../")
    with pytest.raises(ValidationError, match="no such folder"):
        source.list("nowhere/")
    with pytest.raises(ValidationError, match="not a folder"):
        source.list("a.txt/")
