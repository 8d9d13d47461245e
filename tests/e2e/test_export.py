"""End to end: FHIR test server -> runtime (real function_app.py) -> Azurite, validated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, export_body, start_service, validate
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

TYPES = ["Patient", "Observation", "Encounter"]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 120, "Observation": 260, "Encounter": 75}) as server:
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("export-e2e"))
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture
def client(service: RuntimeProcess) -> Iterator[ExportClient]:
    c = ExportClient(service)
    yield c
    c.close()


def test_small_export_succeeds_and_validates(
    client: ExportClient, azurite: Azurite, fhir: FhirTestServer
) -> None:
    job_id = client.start(export_body(fhir, TYPES, "exports-small", "run1"))
    status = client.wait(job_id)
    assert status["state"] == "succeeded", status
    assert status["progress"]["Observation"]["resources"] == 260
    assert {f["type"] for f in status["output"]} == set(TYPES)
    report = validate(azurite, fhir, TYPES, "exports-small", "run1")
    assert report.ok, report.render() if hasattr(report, "render") else report
