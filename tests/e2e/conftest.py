"""Fixtures of the end-to-end tier: the whole service (runtime on function_app.py, Azurite, the
FHIR test server). Each module defines its own `fhir` server; a module that needs a fresh
service per test (crash tests, fault injection) overrides `service` with function scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("service"))
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def client(service: RuntimeProcess) -> Iterator[ExportClient]:
    c = ExportClient(service)
    yield c
    c.close()
