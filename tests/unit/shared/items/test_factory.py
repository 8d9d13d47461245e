"""make_item_source picks the implementation and the connection; the protocol holds for each."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.errors import ValidationError
from shared.items import ItemSource, make_item_source, validate_items
from shared.items.blob import BlobItemSource
from shared.items.http import HttpItemSource
from shared.items.local import LocalItemSource
from shared.outbound import OutboundPolicy
from shared.sources import make_http_client
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY

pytestmark = pytest.mark.unit

SERVICE = (
    f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
    f"BlobEndpoint=http://127.0.0.1:10000/{ACCOUNT}"
)
OTHER = "https://other.blob.core.windows.net/inbox?sv=2024-01-01&sig=abc"


def test_each_kind_makes_its_source(tmp_path: Path) -> None:
    with make_http_client(OutboundPolicy.parse("127.0.0.1")) as client:
        made: list[ItemSource] = [
            make_item_source("blob", container="inbox", storage_connection=SERVICE),
            make_item_source("url", http_client=client, secret_value="token"),
            make_item_source("local", local_root=tmp_path),
        ]
    assert [type(s) for s in made] == [BlobItemSource, HttpItemSource, LocalItemSource]
    assert [s.kind for s in made] == ["blob", "url", "local"]
    assert all(isinstance(s, ItemSource) for s in made)


def test_a_blob_secret_wins_over_the_services_own_storage() -> None:
    own = make_item_source("blob", container="inbox", storage_connection=SERVICE)
    other = make_item_source("blob", container="inbox", secret_value=OTHER, storage_connection=SERVICE)
    assert isinstance(own, BlobItemSource) and isinstance(other, BlobItemSource)
    assert own.container_client.url.startswith("http://127.0.0.1:10000/")
    assert other.container_client.url.startswith("https://other.blob.core.windows.net/inbox")


def test_missing_dependencies_are_the_callers_bug() -> None:
    with pytest.raises(ValueError, match="container"):
        make_item_source("blob", storage_connection=SERVICE)
    with pytest.raises(ValueError, match="http client"):
        make_item_source("url")
    with pytest.raises(ValueError, match="local root"):
        make_item_source("local")


def test_an_unknown_kind_names_the_field() -> None:
    with pytest.raises(ValidationError, match="unknown item source kind 'ftp'") as caught:
        make_item_source("ftp")
    assert caught.value.field == "kind"


def test_validate_items_names_the_first_bad_index(tmp_path: Path) -> None:
    source = make_item_source("blob", container="inbox", storage_connection=SERVICE)
    validate_items(source, ["a.bin", "b/c.bin"])
    with pytest.raises(ValidationError) as caught:
        validate_items(source, ["a.bin", "b/../c.bin", ""])
    assert caught.value.field == "items[1]"
    assert "segments" in str(caught.value)
