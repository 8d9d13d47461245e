"""Fixtures shared by the runtime-tier modules (markers stay on each module)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from selfhost.durable.memory_store import MemoryStore
from selfhost.durable.sqlite_store import SqliteStore
from tests.support.apps import load_app_module
from tests.support.azurite import Azurite
from tests.support.durable_harness import EngineHarness


@pytest.fixture(params=["memory", "sqlite"])
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[EngineHarness]:
    """The durable engine in-process on tests/apps/durable_app, once per store."""
    app = load_app_module("durable_app").app
    store = MemoryStore() if request.param == "memory" else SqliteStore(tmp_path / "hub.sqlite3")
    with EngineHarness(app, store) as h:
        yield h


@pytest.fixture
def env(azurite: Azurite) -> dict[str, str]:
    """The environment the in-process trigger listeners and output handlers read connections from."""
    return {"AzureWebJobsStorage": azurite.connection_string}
