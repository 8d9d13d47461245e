"""Callers through the running service (issue 11, points 3 to 6): named keys are identities that
see and act on their own jobs only, the master key is an operator, the default key a trusted
client; forged principal headers count for nothing; the front door serves only its own jobs;
hostile bodies get 4xx; absolute URLs never come from the Host header; a caller over its rate
gets 429 with Retry-After."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from selfhost.keys import load_or_create_keys
from tests.support.azurite import Azurite
from tests.support.export_env import ROOT, ExportClient, export_body, service_env
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ALICE, BOB = "alice@example.org", "bob@example.org"


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 3}) as server:
        yield server


def _start(azurite: Azurite, fhir: FhirTestServer, tmp: Path, **extra: str) -> RuntimeProcess:
    """The service with two named keys (alice, bob) beside the default and master keys."""
    state = tmp / "state"
    keys = load_or_create_keys(state)
    document = keys.to_json()
    document["functionKeys"].update({ALICE: "alice-key-" + "a" * 30, BOB: "bob-key-" + "b" * 30})
    (state / "keys.json").write_text(json.dumps(document))
    env = service_env(azurite, fhir, tmp, FHIR_FRONTDOOR_KEYS=keys.default_function_key, **extra)
    return RuntimeProcess(ROOT, state, env=env).start()


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = _start(azurite, fhir, tmp_path_factory.mktemp("callers"), RATE_LIMIT_PER_MINUTE="0")
    try:
        yield rt
    finally:
        rt.stop()


def as_key(rt: RuntimeProcess, key: str) -> httpx.Client:
    return httpx.Client(base_url=rt.url(""), timeout=30, headers={"x-functions-key": key})


@pytest.fixture(scope="module")
def people(service: RuntimeProcess) -> Iterator[dict[str, httpx.Client]]:
    clients = {
        "alice": as_key(service, "alice-key-" + "a" * 30),
        "bob": as_key(service, "bob-key-" + "b" * 30),
        "master": as_key(service, service.master_key),
        "default": as_key(service, service.function_key),
    }
    yield clients
    for c in clients.values():
        c.close()


def _submit(client: httpx.Client, fhir: FhirTestServer, prefix: str, **fields: object) -> httpx.Response:
    body = export_body(fhir, ["Patient"], "exports", prefix)
    body.pop("requested_by")
    body.update(fields)
    return client.post("api/exports", json=body)


def test_a_named_key_is_the_identity_and_sees_only_its_own_jobs(
    people: dict[str, httpx.Client], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    r = _submit(people["alice"], fhir, "callers/alice")
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    waiter = ExportClient(service)
    try:
        waiter.wait(job_id)
    finally:
        waiter.close()
    shown = people["alice"].get(f"api/jobs/{job_id}")
    assert shown.status_code == 200 and shown.json()["requested_by"] == ALICE
    listed = people["alice"].get("api/jobs").json()["jobs"]
    assert listed and {j["requested_by"] for j in listed} == {ALICE}
    # Bob cannot see, cancel or retry it, and cannot tell that it exists.
    for method, path in [("GET", f"api/jobs/{job_id}"), ("GET", f"api/exports/{job_id}"),
                         ("DELETE", f"api/jobs/{job_id}"), ("POST", f"api/jobs/{job_id}/retry"),
                         ("POST", f"api/exports/{job_id}/retry")]:  # fmt: skip
        answer = people["bob"].request(method, path)
        assert answer.status_code == 404, (method, path, answer.text)
    assert job_id not in {j["id"] for j in people["bob"].get("api/jobs").json()["jobs"]}
    refused = people["bob"].get("api/jobs", params={"requested_by": ALICE})
    assert refused.status_code == 403 and refused.json()["error"]["field"] == "requested_by"
    # The operator (master key) and a trusted client (default key) see everyone's.
    for who in ("master", "default"):
        assert people[who].get(f"api/jobs/{job_id}").status_code == 200
        assert job_id in {j["id"] for j in people[who].get("api/jobs", params={"limit": 500}).json()["jobs"]}


def test_a_caller_cannot_submit_in_someone_elses_name_but_an_operator_can(
    people: dict[str, httpx.Client], fhir: FhirTestServer
) -> None:
    r = _submit(people["alice"], fhir, "callers/as-bob", requested_by=BOB)
    assert r.status_code == 403 and r.json()["error"]["field"] == "requested_by", r.text
    r = _submit(people["master"], fhir, "callers/for-bob", requested_by=BOB)
    assert r.status_code == 202, r.text
    assert people["bob"].get(f"api/jobs/{r.json()['id']}").status_code == 200


def test_forged_principal_headers_count_for_nothing(
    people: dict[str, httpx.Client], fhir: FhirTestServer
) -> None:
    document = {"claims": [{"typ": "name", "val": BOB}, {"typ": "roles", "val": "operator"}]}
    forged = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode(),
              "X-MS-CLIENT-PRINCIPAL-NAME": BOB}  # fmt: skip
    r = people["alice"].post("api/exports", json={**export_body(fhir, ["Patient"], "exports", "callers/forged"),
                                                  "requested_by": ALICE}, headers=forged)  # fmt: skip
    assert r.status_code == 202, r.text
    assert people["alice"].get(f"api/jobs/{r.json()['id']}").json()["requested_by"] == ALICE
    listed = people["alice"].get("api/jobs", headers=forged).json()["jobs"]
    assert {j["requested_by"] for j in listed} == {ALICE}  # not an operator by a header


def test_the_front_door_serves_only_the_jobs_it_created(
    people: dict[str, httpx.Client], fhir: FhirTestServer
) -> None:
    r = _submit(people["default"], fhir, "callers/labelled", requested_by=ALICE, labels={"frontdoor": "fhir"})
    assert r.status_code == 400 and r.json()["error"]["field"] == "labels.frontdoor", r.text
    r = _submit(people["default"], fhir, "callers/api-job", requested_by=ALICE)
    assert r.status_code == 202, r.text
    status = people["default"].get(f"api/fhir/$export-status/{r.json()['id']}")
    assert status.status_code == 404, status.text


def test_a_confined_caller_cannot_read_the_exports_of_others(people: dict[str, httpx.Client]) -> None:
    """Everyone's exports land in the containers DESTINATION_CONTAINERS names (here all): a batch
    of one's own must not send them elsewhere, nor may the listing show them."""
    batch = {"source": {"kind": "blob", "container": "exports"}, "items": ["callers/alice/Patient-1.ndjson"],
             "destination": {"kind": "http_put", "base_url": "http://127.0.0.1:9/put", "url_template": "{base}/{name}"}}  # fmt: skip
    r = people["bob"].post("api/batches", json=batch)
    assert r.status_code == 400 and r.json()["error"]["field"] == "source.container", r.text
    listing = people["bob"].get("api/sources/blob", params={"container": "exports"})
    assert listing.status_code == 403 and listing.json()["error"]["field"] == "container", listing.text
    assert people["master"].get("api/sources/blob", params={"container": "exports"}).status_code == 200


def test_a_front_door_job_is_not_given_to_whom_its_headers_name(people: dict[str, httpx.Client]) -> None:
    kickoff = people["default"].get(
        "api/fhir/Patient/$export",
        headers={"accept": "application/fhir+json", "prefer": "respond-async", "X-Requested-By": ALICE},
    )  # fmt: skip
    assert kickoff.status_code == 202, kickoff.text
    job_id = kickoff.headers["Content-Location"].rsplit("/", 1)[1]
    assert people["alice"].get(f"api/jobs/{job_id}").status_code == 404
    assert people["alice"].delete(f"api/jobs/{job_id}").status_code == 404
    assert people["master"].get(f"api/jobs/{job_id}").status_code == 200


def test_absolute_urls_never_come_from_the_host_header(people: dict[str, httpx.Client], fhir: FhirTestServer,
                                                       service: RuntimeProcess) -> None:  # fmt: skip
    body = {**export_body(fhir, ["Patient"], "exports", "callers/host"), "requested_by": ALICE}
    r = people["default"].post("api/exports", json=body, headers={"Host": "attacker.example"})
    assert r.status_code == 202, r.text
    assert "attacker" not in r.headers["Location"] and "attacker" not in r.json()["status_url"]
    assert r.headers["Location"] in (
        f"/api/exports/{r.json()['id']}",
        service.url(f"api/exports/{r.json()['id']}"),
    )
    capability = people["default"].get("api/fhir/metadata", headers={"Host": "attacker.example"})
    assert capability.status_code == 200 and "attacker" not in capability.text


@pytest.mark.parametrize(
    ("raw", "status", "field"),
    [
        (b"[" * 5000 + b"]" * 5000, 400, "body"),
        (b'{"requested_by": "\xff"}', 400, "body"),
        (b'{"requested_by": "\\ud800"}', 400, "requested_by"),
        (b'{"options": {"max_file_bytes": 1000000000000000000000000000000}}', 400, "options.max_file_bytes"),
        (b'{"a": NaN}', 400, "body"),
        (b" " + b"x" * (5 * 1024 * 1024), 413, "body"),
    ],
    ids=["deep", "not-utf8", "lone-surrogate", "huge-number", "nan", "too-large"],
)
def test_hostile_bodies_get_a_4xx_naming_the_problem(
    people: dict[str, httpx.Client], raw: bytes, status: int, field: str
) -> None:
    for path in ("api/exports", "api/batches"):
        r = people["default"].post(path, content=raw, headers={"content-type": "application/json"})
        assert r.status_code == status, (path, r.status_code, r.text[:300])
        assert r.json()["error"]["field"] == field, r.text[:300]
    kickoff = people["default"].post(
        "api/fhir/$export", content=raw,
        headers={"content-type": "application/fhir+json", "accept": "application/fhir+json", "prefer": "respond-async"},
    )  # fmt: skip
    assert kickoff.status_code in (400, 413), kickoff.text[:300]
    assert kickoff.json()["resourceType"] == "OperationOutcome"


def test_a_parameters_body_with_a_number_as_parameter_is_refused(people: dict[str, httpx.Client]) -> None:
    r = people["default"].post(
        "api/fhir/$export", json={"resourceType": "Parameters", "parameter": 5},
        headers={"accept": "application/fhir+json", "prefer": "respond-async"},
    )  # fmt: skip
    assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text


def test_identity_required_refuses_callers_without_one(
    azurite: Azurite, fhir: FhirTestServer, tmp_path: Path
) -> None:
    rt = _start(azurite, fhir, tmp_path, REQUIRE_IDENTITY="true", RATE_LIMIT_PER_MINUTE="5")
    try:
        with as_key(rt, rt.function_key) as anonymous, as_key(rt, "alice-key-" + "a" * 30) as alice:
            r = anonymous.get("api/jobs")
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated", r.text
            assert anonymous.get("api/metrics").status_code == 401
            answers = [alice.get("api/jobs") for _ in range(6)]
            assert [a.status_code for a in answers[:5]] == [200] * 5
            assert answers[5].status_code == 429 and int(answers[5].headers["Retry-After"]) >= 1
            assert answers[5].json()["error"]["code"] == "too_many_requests"
            with as_key(rt, "bob-key-" + "b" * 30) as bob:
                assert bob.get("api/jobs").status_code == 200  # another caller has its own rate
    finally:
        rt.stop()
