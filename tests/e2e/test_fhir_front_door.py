"""End to end: a Bulk Data (IG v2) client against the FHIR front door of the running service.

FHIR test server -> runtime (real function_app.py) -> Azurite; the client kicks off with
`Accept: application/fhir+json` and `Prefer: respond-async`, polls the Content-Location honouring
Retry-After (capped at 1 s here), downloads every manifest file with the function key, and checks
the files against the source with `shared.validation.validate_export`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from shared.validation import ValidationReport, split_lines, validate_export
from tests.support.export_env import ExportClient
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

COUNTS = {"Patient": 60, "Observation": 150, "Encounter": 40}
TYPES = list(COUNTS)
MEMBERS = ["patient-00000003", "patient-00000007", "patient-00000011", "patient-00000042"]
FHIR_JSON = "application/fhir+json"


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer(COUNTS, groups={"g1": MEMBERS}) as server:
        yield server


class BulkDataClient:
    """What an IG v2 client does; every response is kept for the test to inspect."""

    def __init__(self, rt: RuntimeProcess) -> None:
        self.rt = rt
        self.http = httpx.Client(timeout=30, headers={"x-functions-key": rt.function_key})
        self.polls: list[httpx.Response] = []

    def close(self) -> None:
        self.http.close()

    def kickoff(
        self,
        path: str,
        params: dict[str, str] | None = None,
        *,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response:
        sent = {"Accept": FHIR_JSON, "Prefer": "respond-async", **(headers or {})}
        url = self.rt.url(f"api/fhir/{path}")
        if body is not None:
            return self.http.post(url, params=params, json=body, headers={**sent, "Content-Type": FHIR_JSON})
        return self.http.get(url, params=params, headers=sent)

    def start(self, path: str, params: dict[str, str] | None = None, **kwargs: Any) -> str:
        r = self.kickoff(path, params, **kwargs)
        assert r.status_code == 202, r.text
        location = r.headers["Content-Location"]
        assert location.startswith(f"{self.rt.base_url}/api/fhir/$export-status/"), location
        return location

    def poll(self, status_url: str, timeout: float = 120) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(status_url)
            self.polls.append(r)
            if r.status_code != 202:
                return r
            assert len(r.headers["X-Progress"]) < 100, r.headers["X-Progress"]
            assert time.monotonic() < deadline, f"export still running: {r.headers['X-Progress']}"
            time.sleep(min(float(r.headers["Retry-After"]), 1.0))

    def manifest(self, status_url: str) -> dict[str, Any]:
        r = self.poll(status_url)
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("application/json")
        manifest = dict(r.json())
        assert manifest["requiresAccessToken"] is True
        assert manifest["error"] == []
        assert manifest["transactionTime"].endswith("Z")
        return manifest

    def download(self, manifest: dict[str, Any]) -> list[tuple[str, list[bytes]]]:
        files = []
        for entry in manifest["output"]:
            r = self.http.get(entry["url"])
            assert r.status_code == 200, r.text
            assert r.headers["Content-Type"].startswith("application/fhir+ndjson")
            name = urlsplit(entry["url"]).path.rpartition("/")[2]
            lines = list(split_lines([r.content]))
            assert len(lines) == entry["count"], entry
            files.append((name, lines))
        return files


@pytest.fixture
def client(service: RuntimeProcess) -> Iterator[BulkDataClient]:
    c = BulkDataClient(service)
    yield c
    c.close()


def check(
    client: BulkDataClient, manifest: dict[str, Any], expected: dict[str, Iterator[str]]
) -> ValidationReport:
    expected_sets = {t: set(ids) for t, ids in expected.items()}
    report = validate_export(expected_sets, client.download(manifest))
    assert report.ok, report.render()
    counts: dict[str, int] = {}
    for entry in manifest["output"]:
        counts[entry["type"]] = counts.get(entry["type"], 0) + entry["count"]
    assert counts == {t: len(ids) for t, ids in expected_sets.items() if ids}
    return report


def outcome(r: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert all(issue["diagnostics"] and "Traceback" not in issue["diagnostics"] for issue in body["issue"])
    return list(body["issue"])


def test_system_export_follows_the_ig(
    client: BulkDataClient, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    r = client.kickoff(
        "$export", {"_outputFormat": "application/fhir+ndjson"}, headers={"From": "ann@example.com"}
    )
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    manifest = client.manifest(status_url)
    check(client, manifest, fhir.expected_ids(TYPES))
    assert [e["type"] for e in manifest["output"]] == TYPES  # one file per type at this size
    request = urlsplit(manifest["request"])
    assert request.path == "/api/fhir/$export"
    assert parse_qsl(request.query) == [("_outputFormat", "application/fhir+ndjson")]
    # The job behind it: requested by the From address, labelled, written under its own prefix.
    job_id = status_url.rpartition("/")[2]
    job = ExportClient(service)
    try:
        record = job.status(job_id)
    finally:
        job.close()
    assert record["requested_by"] == "ann@example.com"
    assert record["labels"]["frontdoor"] == "fhir"
    assert record["request"]["destination"] == {
        "kind": "blob",
        "container": "exports",
        "path_prefix": job_id,
        "secret_name": None,
    }
    # Downloads need the key, and serve only this job's files.
    assert httpx.get(manifest["output"][0]["url"]).status_code == 401
    outcome(client.http.get(f"{status_url.replace('$export-status', '$export-file')}/Claim-1.ndjson"), 404)
    outcome(client.http.get(client.rt.url(f"api/fhir/$export-file/{'0' * 32}/Patient-1.ndjson")), 404)


def test_type_and_since_narrow_the_export(client: BulkDataClient, fhir: FhirTestServer) -> None:
    since = "2024-07-01T00:00:00Z"
    status_url = client.start("$export", {"_type": "Patient,Observation", "_since": since})
    check(client, client.manifest(status_url), fhir.expected_ids(["Patient", "Observation"], since=since))


def test_post_parameters_kickoff_at_patient_level(client: BulkDataClient, fhir: FhirTestServer) -> None:
    body = {
        "resourceType": "Parameters",
        "parameter": [
            {"name": "_type", "valueString": "Observation"},
            {"name": "_typeFilter", "valueString": "Observation?status=final"},
            {"name": "_outputFormat", "valueString": "ndjson"},
        ],
    }
    status_url = client.start("Patient/$export", body=body)
    manifest = client.manifest(status_url)
    check(client, manifest, fhir.expected_ids(["Observation"], type_filters=["Observation?status=final"]))


def test_group_export_contains_only_the_members_data(client: BulkDataClient, fhir: FhirTestServer) -> None:
    status_url = client.start("Group/g1/$export")
    manifest = client.manifest(status_url)
    expected = fhir.expected_member_ids(MEMBERS, TYPES)
    report = check(client, manifest, expected)
    assert report.for_type("Patient").exported == len(MEMBERS)
    assert 0 < report.for_type("Observation").exported < COUNTS["Observation"]


def test_unknown_group_is_404(client: BulkDataClient) -> None:
    issues = outcome(client.kickoff("Group/nope/$export"), 404)
    assert "Group/nope" in issues[0]["diagnostics"]


def test_delete_cancels_and_the_status_url_then_answers_404(
    client: BulkDataClient, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    fhir.faults.add(Fault("slow", delay_s=1.0, resource_type="Observation", times=None))
    try:
        status_url = client.start("$export")

        # Delete while it runs (Observation pages take a second each), not while still queued.
        def running() -> bool:
            r = client.http.get(status_url)
            return r.status_code == 202 and r.headers["X-Progress"].startswith("running")

        wait_until(running, timeout=30, interval=0.2, message="the export to run")
        r = client.http.delete(status_url)
        assert r.status_code == 202, r.text
        outcome(client.http.get(status_url), 404)
        outcome(client.http.delete(status_url), 404)
        jobs = ExportClient(service)
        try:
            assert jobs.wait(status_url.rpartition("/")[2])["state"] == "cancelled"
        finally:
            jobs.close()
    finally:
        fhir.faults.clear()


def test_delete_after_completion_removes_the_export(client: BulkDataClient) -> None:
    status_url = client.start("$export", {"_type": "Encounter"})
    manifest = client.manifest(status_url)
    assert client.http.delete(status_url).status_code == 202
    outcome(client.http.get(status_url), 404)
    outcome(client.http.get(manifest["output"][0]["url"]), 404)


def test_bad_output_format_is_400(client: BulkDataClient) -> None:
    issues = outcome(client.kickoff("$export", {"_outputFormat": "text/csv"}), 400)
    assert issues[0]["expression"] == ["_outputFormat"]


def test_unsupported_parameters_are_refused_unless_lenient(client: BulkDataClient) -> None:
    unsupported = {"includeAssociatedData": "LatestProvenanceResources"}
    issues = outcome(client.kickoff("Patient/$export", {**unsupported, "_since": "last week"}), 400)
    assert sorted(i["expression"][0] for i in issues) == ["_since", "includeAssociatedData"]
    lenient = {"Prefer": "respond-async, handling=lenient"}
    r = client.kickoff("Patient/$export", {**unsupported, "_type": "Encounter"}, headers=lenient)
    assert r.status_code == 202, r.text
    assert "includeAssociatedData" in r.text  # the informational outcome says what was ignored
    assert client.http.delete(r.headers["Content-Location"]).status_code == 202


def test_requests_without_a_key_are_refused(service: RuntimeProcess) -> None:
    assert httpx.get(service.url("api/fhir/$export")).status_code == 401
