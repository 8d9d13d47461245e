"""Fixtures shared by every tier. Servers are started by the tests that need them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings

from tests.support.azurite import Azurite, azurite_available, start_azurite

# Machines here are noisy (2 cores shared with servers the tests start): a per-example deadline
# would fail on timing, not on behaviour. Example counts stay as each test sets them.
settings.register_profile("project", deadline=None)
settings.load_profile("project")


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """One Azurite for the session on free ports; tests use unique container/queue names."""
    if not azurite_available():
        pytest.skip("Azurite is not installed (run `make setup`)")
    server = start_azurite(Path(tmp_path_factory.mktemp("azurite")))
    try:
        yield server
    finally:
        server.stop()
