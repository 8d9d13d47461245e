"""`list_local` on a temporary root: folders and files, paging by continuation, whole folders, and
the refusals (absolute paths, `..`, links out of the root) naming the `path` field."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from shared.errors import ValidationError
from shared.source_listing import Entry, SourceNotFound, list_local

pytestmark = pytest.mark.unit


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """root/ a.txt, scans/s-0..s-4.dcm, scans/deep/d.dcm, links to outside; outside/secret.txt."""
    base = tmp_path / "root"
    (base / "scans" / "deep").mkdir(parents=True)
    (base / "a.txt").write_bytes(b"alpha\n")
    for i in range(5):
        (base / "scans" / f"s-{i}.dcm").write_bytes(b"x" * (i + 1))
    (base / "scans" / "deep" / "d.dcm").write_bytes(b"deep")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret.txt").write_bytes(b"not yours")
    os.symlink(tmp_path / "outside", base / "out-folder")
    os.symlink(tmp_path / "outside" / "secret.txt", base / "out-file.txt")
    os.symlink(base / "scans", base / "in-folder")
    return base


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def test_the_root_shows_its_folders_and_files_but_no_link_out(root: Path) -> None:
    listing = list_local({}, root)
    assert listing.source == "local" and listing.continuation is None
    assert names(listing.entries) == ["a.txt", "scans/"]  # linked folders are never entered
    a_txt = listing.entries[0]
    assert (a_txt.kind, a_txt.size, a_txt.content_type) == ("file", 6, "text/plain")
    assert listing.entries[1].kind == "folder" and listing.entries[1].size is None
    assert listing.to_dict()["path"] == "" and listing.to_dict()["entries"][1]["kind"] == "folder"


def test_a_folder_pages_by_continuation_without_loss_or_repeat(root: Path) -> None:
    seen: list[str] = []
    continuation: str | None = None
    pages = 0
    while True:
        params = {"path": "scans", "limit": "2", **({"continuation": continuation} if continuation else {})}
        listing = list_local(params, root)
        seen += names(listing.entries)
        pages += 1
        continuation = listing.continuation
        if continuation is None:
            break
    assert pages == 3
    assert seen == ["scans/deep/", *[f"scans/s-{i}.dcm" for i in range(5)]]


def test_recursive_lists_every_file_below_a_folder(root: Path) -> None:
    listing = list_local({"path": "scans/", "recursive": "true"}, root)
    assert names(listing.entries) == ["scans/deep/d.dcm", *[f"scans/s-{i}.dcm" for i in range(5)]]
    assert {e.kind for e in listing.entries} == {"file"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"path": "/etc"}, "path"),
        ({"path": "../outside"}, "path"),
        ({"path": "scans/../../outside"}, "path"),
        ({"path": "out-folder"}, "path"),  # a link out of the root
        ({"path": "in-folder"}, "path"),  # a link, even one that stays inside
        ({"path": "a.txt"}, "path"),
        ({"path": "scans", "limit": "0"}, "limit"),
        ({"path": "scans", "limit": "1001"}, "limit"),
        ({"path": "scans", "continuation": "abc"}, "continuation"),
        ({"path": "scans", "recursive": "maybe"}, "recursive"),
    ],
)
def test_bad_input_is_refused_naming_the_field(root: Path, params: dict[str, str], field: str) -> None:
    with pytest.raises((ValidationError, SourceNotFound)) as caught:
        list_local(params, root)
    err = caught.value
    assert isinstance(err, ValidationError | SourceNotFound) and err.field == field


def test_a_missing_folder_or_root_is_not_found(root: Path) -> None:
    with pytest.raises(SourceNotFound) as caught:
        list_local({"path": "nope"}, root)
    assert caught.value.field == "path"
    with pytest.raises(SourceNotFound, match="BATCH_LOCAL_ROOT is not set"):
        list_local({}, None)


def test_a_name_longer_than_the_file_system_allows_is_not_found(root: Path) -> None:
    # ENAMETOOLONG from the folder checks was a 500 (found by tests/fuzz).
    with pytest.raises(SourceNotFound) as caught:
        list_local({"path": "0" * 300}, root)
    assert caught.value.field == "path"
