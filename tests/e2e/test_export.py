"""End to end: FHIR test server -> runtime (real function_app.py) -> Azurite, validated."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, export_body, validate
from tests.support.fhir_server import FhirTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

TYPES = ["Patient", "Observation", "Encounter"]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 120, "Observation": 260, "Encounter": 75}) as server:
        yield server


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
