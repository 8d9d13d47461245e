"""Fixtures of the CLI's end-to-end tests: the whole service (as tests/e2e starts it), a FHIR test
server to export from and a WebDAV server to send batches to. The unit tests use none of them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.azurite import Azurite
from tests.support.export_env import start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.webdav_server import WebDavTestServer


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 120, "Observation": 80}) as server:
        yield server


@pytest.fixture(scope="module")
def dav() -> Iterator[WebDavTestServer]:
    with WebDavTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("cli-service"))
    try:
        yield rt
    finally:
        rt.stop()
