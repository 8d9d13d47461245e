"""The storage policy through the running service: a job can never write into the service's own
containers, and the service's identity is never lent to a host a request names (issue 11)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.export_env import ExportClient, export_body
from tests.support.fhir_faults import Fault
from tests.support.fhir_server import FhirTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:
        yield server


@pytest.mark.parametrize(
    "container", ["export-jobs", "azure-webjobs-secrets", "bulkexporthub-leases", "generated-data"]
)
def test_the_services_own_containers_are_refused_as_destinations(
    client: ExportClient, fhir: FhirTestServer, container: str
) -> None:
    r = client.submit(export_body(fhir, ["Patient"], container, "p"))
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "destination.container"
    assert "belongs to the service" in r.json()["error"]["message"]
    batch = {"source": {"kind": "blob", "container": "acquired"}, "items": ["a.dcm"],
             "destination": {"kind": "blob", "container": container}, "requested_by": "a@example.com"}  # fmt: skip
    r = client.http.post(client.rt.url("api/batches"), json=batch)
    assert r.status_code == 400 and r.json()["error"]["field"] == "destination.container", r.text


def test_an_account_url_without_a_sas_is_refused(client: ExportClient, fhir: FhirTestServer) -> None:
    body = export_body(fhir, ["Patient"], "out", "p")
    body["destination"]["secret"] = "https://attacker.example.com/out"
    r = client.submit(body)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["field"] == "destination.secret"
    assert "attacker" not in r.text  # the refusal never echoes the secret


def test_a_batch_cannot_read_the_services_own_records(client: ExportClient) -> None:
    batch = {"source": {"kind": "blob", "container": "azure-webjobs-secrets"}, "items": ["host.json"],
             "destination": {"kind": "blob", "container": "out"}, "requested_by": "a@example.com"}  # fmt: skip
    r = client.http.post(client.rt.url("api/batches"), json=batch)
    assert r.status_code == 400 and r.json()["error"]["field"] == "source.container", r.text


def test_two_jobs_never_write_under_one_prefix_at_once(client: ExportClient, fhir: FhirTestServer) -> None:
    fhir.faults.add(Fault(kind="slow", delay_s=0.5, times=None))  # the first job is still running
    try:
        first = client.start(export_body(fhir, ["Patient"], "exports", "shared-prefix"))
        r = client.submit(export_body(fhir, ["Patient"], "exports", "shared-prefix/sub"))
        assert r.status_code == 409, r.text
        assert r.json()["error"]["field"] == "destination" and first in r.json()["error"]["message"]
        shared = export_body(fhir, ["Patient"], "exports", "shared-prefix", share_destination=True)
        assert client.submit(shared).status_code == 202
    finally:
        fhir.faults.clear()
