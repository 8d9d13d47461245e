"""The blob jti store in Azurite: one use per (client, jti), whichever store object or thread asks."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from azure.storage.blob import ContainerClient

from shared.jti_store import CONTAINER, BlobJtiStore
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


def test_a_jti_is_accepted_once_per_client(azurite: Azurite) -> None:
    store = BlobJtiStore.connect(azurite.connection_string)
    jti, expires = uuid.uuid4().hex, time.time() + 300

    assert store.remember("analytics", jti, expires)
    assert not store.remember("analytics", jti, expires)
    assert store.remember("warehouse", jti, expires)  # another client's jti is its own
    # A second store object (another instance of the app) sees the same blobs.
    container = ContainerClient.from_connection_string(azurite.connection_string, CONTAINER)
    assert not BlobJtiStore(container).remember("analytics", jti, expires)
    names = [b.name for b in container.list_blobs()]
    assert all(len(part) == 64 for name in names for part in name.split("/"))  # digests only
    assert jti not in "".join(names)


def test_concurrent_uses_of_one_jti_let_exactly_one_through(azurite: Azurite) -> None:
    jti, expires = uuid.uuid4().hex, time.time() + 300
    stores = [BlobJtiStore.connect(azurite.connection_string) for _ in range(8)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda s: s.remember("analytics", jti, expires), stores))
    assert results.count(True) == 1
