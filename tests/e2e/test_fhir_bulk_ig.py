"""End to end, what the Bulk Data IG v2 conformance suite checks beyond the basics: the anonymous
CapabilityStatement, `_typeFilter` OR with exact counts (repeated and comma forms, overlapping),
Group exports of 2,000 and 10,000 members searched in chunks, the `patient` parameter, `_elements`
with SUBSETTED, lenient handling's error file, `Expires`, the three kick-off refusals, and a
kill -9 while ORed searches are de-duplicated.

FHIR test server -> runtime (real function_app.py) -> Azurite; the client is the IG-following
`BulkDataClient` of `test_fhir_front_door` (Accept, Prefer, Content-Location, Retry-After).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.validation import split_lines, validate_export
from tests.e2e.test_fhir_front_door import BulkDataClient, check, outcome
from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, export_body, start_service
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

COUNTS = {"Patient": 10_000, "Observation": 6_000, "Encounter": 2_000}
TYPES = list(COUNTS)
# 2,000 members with data of every type: patients 0, 3, 6, ... 5997 (Observation j and Encounter j
# belong to patient j).
BIG = [f"patient-{i:08d}" for i in range(0, 6000, 3)]
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer(COUNTS, groups={"big": BIG}) as server:
        server.add_group("all", server.patient_ids(0, 10_000))
        yield server


@pytest.fixture
def client(service: RuntimeProcess) -> Iterator[BulkDataClient]:
    c = BulkDataClient(service)
    yield c
    c.close()


def completed(client: BulkDataClient, status_url: str) -> httpx.Response:
    r = client.poll(status_url, timeout=180)
    assert r.status_code == 200, r.text
    return r


def history_of(service: RuntimeProcess, job_id: str) -> list[str]:
    """Every stored history event of the job's orchestrations (the job's and its types')."""
    (database,) = (service.state_dir / "durable").glob("*.sqlite3")
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT event FROM history WHERE instance_id LIKE ?", (f"{job_id}%",)).fetchall()
    return [str(event) for (event,) in rows]


# --- the CapabilityStatement ------------------------------------------------------------------------


def test_metadata_is_an_anonymous_bulk_data_capability_statement(service: RuntimeProcess) -> None:
    r = httpx.get(service.url("api/fhir/metadata"), headers={"Accept": "application/fhir+json"})
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"].startswith("application/fhir+json")
    statement = r.json()
    assert statement["resourceType"] == "CapabilityStatement" and statement["kind"] == "instance"
    assert statement["fhirVersion"] == "4.0.1"
    assert "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data" in statement["instantiates"]
    rest = statement["rest"][0]
    assert {o["name"] for o in rest["operation"]} == {"export", "patient-export", "group-export"}
    (oauth,) = rest["security"]["extension"]
    assert oauth["extension"] == [{"url": "token", "valueUri": service.url("api/fhir/auth/token")}]


# --- kick-off refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "params", "named"),
    [
        ({"Accept": "application/json"}, {}, "Accept"),
        ({"Prefer": "handling=lenient"}, {}, "Prefer"),
        ({}, {"_since": "2999-01-01T00:00:00Z"}, "_since"),
    ],
    ids=["no-fhir-json-accept", "no-respond-async", "since-in-the-future"],
)
def test_kickoffs_the_reference_server_refuses_are_400(
    client: BulkDataClient, headers: dict[str, str], params: dict[str, str], named: str
) -> None:
    issues = outcome(client.kickoff("$export", params, headers=headers), 400)
    assert [i["expression"] for i in issues] == [[named]]
    assert named in issues[0]["diagnostics"]


# --- _typeFilter OR -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "filters",
    [
        [("_typeFilter", "Patient?gender=female"), ("_typeFilter", "Patient?active=false")],
        [("_typeFilter", "Patient?gender=female,Patient?active=false")],
    ],
    ids=["repeated", "comma-separated"],
)
def test_type_filters_are_ored_and_overlaps_written_once(
    client: BulkDataClient, fhir: FhirTestServer, filters: list[tuple[str, str]]
) -> None:
    queries = [value for _, value in filters]
    expected = {t: set(ids) for t, ids in fhir.expected_ids(["Patient"], type_filters=queries).items()}
    females = set(fhir.expected_ids(["Patient"], type_filters=["Patient?gender=female"])["Patient"])
    inactive = set(fhir.expected_ids(["Patient"], type_filters=["Patient?active=false"])["Patient"])
    assert females & inactive and expected["Patient"] == females | inactive  # the filters overlap
    status_url = client.start("$export", [("_type", "Patient"), *filters])  # type: ignore[arg-type]
    report = check(client, client.manifest(status_url), expected)
    assert report.for_type("Patient").exported == len(females | inactive)  # each overlap once


def test_ored_filters_of_several_types_with_since(client: BulkDataClient, fhir: FhirTestServer) -> None:
    since = "2024-04-01T00:00:00Z"
    queries = ["Observation?status=final,Observation?status=amended", "Encounter?status=planned"]
    params = [("_type", "Observation,Encounter"), ("_since", since), *(("_typeFilter", q) for q in queries)]
    status_url = client.start("$export", params)  # type: ignore[arg-type]
    expected = fhir.expected_ids(["Observation", "Encounter"], since=since, type_filters=queries)
    check(client, client.manifest(status_url), expected)


# --- Group exports in chunks, the patient parameter --------------------------------------------------


def test_a_2000_member_group_exports_each_members_data_once(
    client: BulkDataClient, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    served = len(fhir.requests)
    status_url = client.start("Group/big/$export")
    manifest = client.manifest(status_url)
    report = check(client, manifest, fhir.expected_member_ids(BIG, TYPES))
    assert [report.for_type(t).exported for t in TYPES] == [2000, 2000, 667]
    searches = [r for r in list(fhir.requests)[served:] if r.resource_type == "Observation" and r.page == 1]
    chunks = [r.param("patient")[0].split(",") for r in searches]
    assert len(chunks) > 5 and sorted(i for chunk in chunks for i in chunk) == sorted(BIG)
    # History stays small: the member list is in the work store, never in an event.
    job_id = status_url.rpartition("/")[2]
    events = history_of(service, job_id)
    assert max(len(e) for e in events) < 16_000
    assert max(e.count("patient-0") for e in events) <= 2 * max(len(c) for c in chunks)
    jobs = ExportClient(service)
    try:
        assert jobs.status(job_id)["request"]["source"]["patients"]["count"] == 2000
    finally:
        jobs.close()


@pytest.mark.slow
def test_a_10000_member_group(client: BulkDataClient, fhir: FhirTestServer) -> None:
    status_url = client.start("Group/all/$export", {"_type": "Patient"})
    check(client, client.manifest(status_url), fhir.expected_member_ids(fhir.groups["all"], ["Patient"]))


def parameters(*entries: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": n, **v} for n, v in entries]}


def test_the_patient_parameter_restricts_patient_and_group_exports(
    client: BulkDataClient, fhir: FhirTestServer
) -> None:
    chosen = ["patient-00000003", "patient-00000010", "patient-00004500"]
    body = parameters(*(("patient", {"valueReference": {"reference": f"Patient/{p}"}}) for p in chosen))
    manifest = client.manifest(client.start("Patient/$export", body=body))
    report = check(client, manifest, fhir.expected_member_ids(chosen, TYPES))
    assert report.for_type("Patient").exported == 3
    members = [p for p in chosen if p in BIG]
    assert members == ["patient-00000003", "patient-00004500"]
    body = parameters(*(("patient", {"valueReference": {"reference": f"Patient/{p}"}}) for p in members))
    manifest = client.manifest(client.start("Group/big/$export", body=body))
    check(client, manifest, fhir.expected_member_ids(members, TYPES))


# --- _elements -----------------------------------------------------------------------------------------


def lines_of(client: BulkDataClient, manifest: dict[str, Any], resource_type: str) -> list[dict[str, Any]]:
    return [
        json.loads(line)
        for entry in manifest["output"]
        if entry["type"] == resource_type
        for line in split_lines([client.http.get(entry["url"]).content])
    ]


def test_elements_are_searched_and_resources_marked_subsetted(
    client: BulkDataClient, fhir: FhirTestServer
) -> None:
    since = "2024-11-01T00:00:00Z"
    params = {"_type": "Patient,Observation", "_elements": "Patient.gender,status", "_since": since}
    manifest = client.manifest(client.start("$export", params))
    check(client, manifest, fhir.expected_ids(["Patient", "Observation"], since=since))
    for resource_type, kept in (("Patient", {"gender", "status"}), ("Observation", {"status"})):
        for resource in lines_of(client, manifest, resource_type):
            assert set(resource) <= {"resourceType", "id", "meta", *kept}, resource
            assert [t for t in resource["meta"]["tag"] if t["code"] == "SUBSETTED"] == [
                {**SUBSETTED, "display": "subsetted"}
            ]


def test_elements_the_source_cannot_search_are_refused_or_reported_when_lenient(
    client: BulkDataClient, fhir: FhirTestServer
) -> None:
    fhir.elements_supported = False  # its CapabilityStatement no longer lists _elements
    try:
        params = {"_type": "Encounter", "_elements": "status"}
        issues = outcome(client.kickoff("$export", params), 400)
        assert [i["expression"] for i in issues] == [["_elements"]]
        lenient = {"Prefer": "respond-async, handling=lenient"}
        status_url = client.start("$export", params, headers=lenient)
        r = completed(client, status_url)
    finally:
        fhir.elements_supported = True
    manifest = r.json()
    (error,) = manifest["error"]
    outcomes = [json.loads(line) for line in split_lines([client.http.get(error["url"]).content])]
    assert [o["issue"][0]["expression"] for o in outcomes] == [["_elements"]]
    assert all("SUBSETTED" not in json.dumps(e) for e in lines_of(client, manifest, "Encounter"))


# --- lenient handling, Expires ---------------------------------------------------------------------------


def test_lenient_errors_are_an_error_file_and_files_expire(
    client: BulkDataClient, fhir: FhirTestServer
) -> None:
    params = {"_type": "Encounter,Claim", "includeAssociatedData": "LatestProvenanceResources"}
    status_url = client.start("$export", params, headers={"Prefer": "respond-async, handling=lenient"})
    r = completed(client, status_url)
    expires = parsedate_to_datetime(r.headers["Expires"])
    assert timedelta(days=6, hours=23) < expires - datetime.now(UTC) <= timedelta(days=7)
    manifest = r.json()
    check(client, manifest, fhir.expected_ids(["Encounter"]))
    (error,) = manifest["error"]
    assert error["type"] == "OperationOutcome" and error["count"] == 2
    download = client.http.get(error["url"])
    assert download.status_code == 200 and download.headers["Content-Type"].startswith(
        "application/fhir+ndjson"
    )
    outcomes = [json.loads(line) for line in split_lines([download.content])]
    assert {o["resourceType"] for o in outcomes} == {"OperationOutcome"}
    assert sorted(o["issue"][0]["expression"][0] for o in outcomes) == ["_type", "includeAssociatedData"]
    assert "Claim" in json.dumps(outcomes)


# --- kill -9 while ORed searches are de-duplicated -----------------------------------------------------


@pytest.fixture
def crash_service(azurite: Azurite, fhir: FhirTestServer, tmp_path: Path) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, tmp_path)
    try:
        yield rt
    finally:
        rt.stop()


@pytest.mark.slow
def test_kill_9_between_ored_searches_loses_and_repeats_nothing(
    crash_service: RuntimeProcess, azurite: Azurite, fhir: FhirTestServer
) -> None:
    """Through the job API (`source.type_filters`): the second search's duplicates are found in
    the work store after the restart, not in the dead process's cache."""
    queries = ["Patient?gender=male", "Patient?active=true"]
    first = sum(1 for _ in fhir.expected_ids(["Patient"], type_filters=queries[:1])["Patient"])
    body = export_body(fhir, ["Patient"], "crash-or", "c", page_size=100, commit_every_pages=2)
    body["source"]["type_filters"] = queries
    jobs = ExportClient(crash_service)
    fhir.faults.add(Fault("slow", delay_s=0.1, resource_type="Patient", times=None))
    try:
        job_id = jobs.start(body)
        wait_until(lambda: jobs.status(job_id)["progress"]["Patient"]["resources"] > first + 100, timeout=120,
                   message="the second search under way")  # fmt: skip
        crash_service.kill()
        crash_service.start()
        status = jobs.wait(job_id, timeout=180)
    finally:
        fhir.faults.clear()
        jobs.close()
    assert status["state"] == "succeeded", status
    expected = {t: set(ids) for t, ids in fhir.expected_ids(["Patient"], type_filters=queries).items()}
    with ContainerClient.from_connection_string(azurite.connection_string, "crash-or") as container:
        files = [(b.name, list(split_lines([container.download_blob(b.name).readall()])))
                 for b in container.list_blobs(name_starts_with="c/")]  # fmt: skip
        report = validate_export(expected, files)
    assert report.ok, report.render()
    with ContainerClient.from_connection_string(azurite.connection_string, "export-work") as work:
        assert list(work.list_blobs(name_starts_with=f"jobs/{job_id}/")) == []  # cleaned up at the end
