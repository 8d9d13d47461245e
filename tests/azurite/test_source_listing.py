"""`list_blob` against Azurite: folders and files under a prefix, every file below it, paging with
the service's own continuation, and the refusals naming their field."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest
from azure.storage.blob import ContainerClient, ContentSettings

from shared.errors import ValidationError
from shared.source_listing import Entry, SourceNotFound, list_blob
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    name = f"pick-{uuid.uuid4().hex[:12]}"
    with ContainerClient.from_connection_string(azurite.connection_string, name) as client:
        client.create_container()
        for i in range(5):
            client.upload_blob(
                f"s1/scan-{i}.dcm", b"d" * (10 + i), content_settings=ContentSettings("application/dicom")
            )
        client.upload_blob("s1/deep/x.bin", b"x")
        client.upload_blob("s2/y.bin", b"yy")
        client.upload_blob("top.txt", b"top")
        yield client
        client.delete_container()


def names(entries: list[Entry]) -> list[str]:
    return [e.name for e in entries]


def of(client: ContainerClient) -> Callable[[str], ContainerClient]:
    def container_of(name: str) -> ContainerClient:
        assert name == client.container_name
        return client

    return container_of


def test_a_prefix_shows_its_folders_and_files(container: ContainerClient) -> None:
    top = list_blob({"container": container.container_name}, of(container))
    assert names(top.entries) == ["s1/", "s2/", "top.txt"]
    assert [e.kind for e in top.entries] == ["folder", "folder", "file"]
    s1 = list_blob({"container": container.container_name, "prefix": "s1/"}, of(container))
    assert names(s1.entries) == ["s1/deep/", *[f"s1/scan-{i}.dcm" for i in range(5)]]
    scan = s1.entries[1]
    assert (scan.size, scan.content_type) == (10, "application/dicom")
    partial = list_blob({"container": container.container_name, "prefix": "s1/scan-"}, of(container))
    assert len(partial.entries) == 5


def test_recursive_pages_through_every_file_below_a_prefix(container: ContainerClient) -> None:
    seen: list[str] = []
    continuation = None
    pages = 0
    while True:
        params = {"container": container.container_name, "prefix": "s1/", "recursive": "true", "limit": "2"}
        if continuation:
            params["continuation"] = continuation
        listing = list_blob(params, of(container))
        seen += names(listing.entries)
        pages += 1
        continuation = listing.continuation
        if not continuation:
            break
    assert pages == 3
    assert seen == ["s1/deep/x.bin", *[f"s1/scan-{i}.dcm" for i in range(5)]]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "container"),
        ({"container": "Bad_Name"}, "container"),
        ({"container": "ok-name", "prefix": "/abs"}, "prefix"),
        ({"container": "ok-name", "prefix": "a/../b/"}, "prefix"),
        ({"container": "ok-name", "limit": "x"}, "limit"),
        ({"container": "export-jobs"}, "container"),  # the service's own
        ({"container": "azure-webjobs-secrets"}, "container"),
    ],
)
def test_bad_input_is_refused_naming_the_field(params: dict[str, str], field: str) -> None:
    def never(name: str) -> ContainerClient:
        raise AssertionError("no storage call for bad input")

    with pytest.raises(ValidationError) as caught:
        list_blob(params, never)
    assert caught.value.field == field


def test_a_missing_container_is_not_found(azurite: Azurite) -> None:
    client = ContainerClient.from_connection_string(azurite.connection_string, "never-made")
    with client, pytest.raises(SourceNotFound) as caught:
        list_blob({"container": "never-made"}, lambda name: client)
    assert caught.value.field == "container"
