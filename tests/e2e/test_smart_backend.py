"""End to end: SMART Backend Services clients (tests/support/bulk_client.py, written from the specs)
against the FHIR front door of the running service.

Three registered clients: `rs-client` (RS384, inline JWKS, system/*.read), `es-client` (ES384, a
JWKS URL served on 127.0.0.1, system/*.rs) and `narrow-client` (RS384, system/Patient.read). Each
discovers the token endpoint, signs an assertion, gets a token, exports, and downloads with it;
every kind of refusal is checked on the wire, and the service's function key still opens the door.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from shared.validation import validate_export
from tests.support.azurite import Azurite
from tests.support.bulk_client import BulkClient, ClientKey, JwksServer, discover
from tests.support.export_env import ExportClient, start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

COUNTS = {"Patient": 40, "Observation": 90, "Encounter": 30}
FHIR_JSON = "application/fhir+json"
RS_KEY, ES_KEY, NARROW_KEY = ClientKey.rsa(), ClientKey.ec(), ClientKey.rsa()


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer(COUNTS) as server:
        yield server


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer() as server:
        server.sets["es-client"] = ES_KEY.jwks()
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, jwks_server: JwksServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    clients = [
        {"client_id": "rs-client", "jwks": RS_KEY.jwks(), "scopes": ["system/*.read"]},
        {"client_id": "es-client", "jwks_url": jwks_server.url("es-client"), "scopes": ["system/*.rs"]},
        {"client_id": "narrow-client", "jwks": NARROW_KEY.jwks(), "scopes": ["system/Patient.read"]},
    ]
    rt = start_service(azurite, fhir, tmp_path_factory.mktemp("smart"), SMART_CLIENTS=json.dumps(clients))
    try:
        yield rt
    finally:
        rt.stop()


def fhir_base(rt: RuntimeProcess) -> str:
    return rt.url("api/fhir")


@pytest.fixture
def rs(service: RuntimeProcess) -> Iterator[BulkClient]:
    with_client = BulkClient(fhir_base(service), "rs-client", RS_KEY, "system/*.read")
    yield with_client
    with_client.close()


@pytest.fixture
def es(service: RuntimeProcess) -> Iterator[BulkClient]:
    with_client = BulkClient(fhir_base(service), "es-client", ES_KEY, "system/*.rs")
    yield with_client
    with_client.close()


@pytest.fixture
def narrow(service: RuntimeProcess) -> Iterator[BulkClient]:
    with_client = BulkClient(fhir_base(service), "narrow-client", NARROW_KEY, "system/Patient.read")
    yield with_client
    with_client.close()


def outcome(r: httpx.Response, status: int) -> list[dict[str, Any]]:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith(FHIR_JSON)
    body = r.json()
    assert body["resourceType"] == "OperationOutcome"
    assert all(issue["diagnostics"] for issue in body["issue"])
    return list(body["issue"])


def oauth_error(r: httpx.Response, status: int, error: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["Content-Type"].startswith("application/json")
    assert r.headers["Cache-Control"] == "no-store"
    body = r.json()
    assert body["error"] == error, body
    return str(body["error_description"])


def check_export(
    client: BulkClient, fhir: FhirTestServer, manifest: dict[str, Any], types: list[str]
) -> None:
    assert manifest["requiresAccessToken"] is True
    assert manifest["error"] == []
    report = validate_export({t: set(fhir.expected_ids([t])[t]) for t in types}, client.download(manifest))
    assert report.ok, report.render()
    assert sorted({e["type"] for e in manifest["output"]}) == sorted(types)


def job_labels(rt: RuntimeProcess, status_url: str) -> dict[str, str]:
    jobs = ExportClient(rt)
    try:
        return dict(jobs.status(status_url.rpartition("/")[2])["labels"])
    finally:
        jobs.close()


# --- discovery and full exports -----------------------------------------------------------------


def test_discovery_is_anonymous_and_names_the_token_endpoint(service: RuntimeProcess) -> None:
    with httpx.Client(timeout=30) as http:
        config = discover(http, fhir_base(service))
    assert config["token_endpoint"] == f"{fhir_base(service)}/auth/token"
    assert config["grant_types_supported"] == ["client_credentials"]
    assert config["token_endpoint_auth_methods_supported"] == ["private_key_jwt"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) >= {"RS384", "ES384"}
    assert "system/*.read" in config["scopes_supported"]
    assert "client-confidential-asymmetric" in config["capabilities"]


def test_a_full_export_with_rs384_and_inline_keys(
    rs: BulkClient, fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    token = rs.request_token()
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    body = token.json()
    assert (body["token_type"], body["expires_in"], body["scope"]) == ("bearer", 300, "system/*.read")

    status_url = rs.start("$export", {"_type": "Patient,Observation"})
    manifest = rs.manifest(status_url)
    check_export(rs, fhir, manifest, ["Patient", "Observation"])
    assert job_labels(service, status_url)["smart_client"] == "rs-client"
    # Files need the token: none at all is a 401 OperationOutcome.
    outcome(httpx.get(manifest["output"][0]["url"]), 401)


def test_a_full_export_with_es384_and_a_jwks_url(
    es: BulkClient, fhir: FhirTestServer, jwks_server: JwksServer
) -> None:
    manifest = es.manifest(es.start("Patient/$export"))
    check_export(es, fhir, manifest, list(COUNTS))
    assert "/es-client.json" in jwks_server.requests


# --- refused token requests ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("break_it", "description"),
    [
        (lambda c: c.assertion(key=ClientKey.rsa(RS_KEY.kid)), "signature does not verify"),
        (lambda c: c.assertion(expires_in=-120), "expired"),
        (lambda c: c.assertion(expires_in=600), "more than 5 minutes ahead"),
        (lambda c: c.assertion(aud=c.token_endpoint.replace("/auth/token", "/token")), "aud must be"),
        (lambda c: c.assertion(iss="unknown-client"), "not a registered client"),
    ],
    ids=["bad-signature", "expired", "exp-too-far-ahead", "wrong-audience", "unknown-client"],
)
def test_bad_assertions_are_refused(rs: BulkClient, break_it: Any, description: str) -> None:
    assert description in oauth_error(rs.request_token(break_it(rs)), 401, "invalid_client")


def test_a_replayed_assertion_is_refused(es: BulkClient) -> None:
    assertion = es.assertion()
    assert es.request_token(assertion).status_code == 200
    assert "jti" in oauth_error(es.request_token(assertion), 401, "invalid_client")


def test_scopes_beyond_the_registration_are_refused(narrow: BulkClient) -> None:
    oauth_error(narrow.request_token(scope="system/*.read"), 400, "invalid_scope")
    oauth_error(narrow.request_token(scope="system/Observation.read"), 400, "invalid_scope")


def test_the_token_endpoint_speaks_oauth(rs: BulkClient) -> None:
    r = rs.http.post(rs.token_endpoint, data={"grant_type": "password", "client_assertion_type": "x"})
    oauth_error(r, 400, "unsupported_grant_type")
    oauth_error(
        rs.http.post(rs.token_endpoint, json={"grant_type": "client_credentials"}), 400, "invalid_request"
    )


# --- the front door's own checks ----------------------------------------------------------------


def test_a_type_outside_the_scopes_is_403(narrow: BulkClient, fhir: FhirTestServer) -> None:
    issues = outcome(narrow.kickoff("$export", {"_type": "Patient,Observation"}), 403)
    assert [(i["code"], i["expression"]) for i in issues] == [("forbidden", ["_type"])]
    assert "Observation" in issues[0]["diagnostics"]
    # Without _type, the export is what the scopes allow.
    manifest = narrow.manifest(narrow.start("$export"))
    check_export(narrow, fhir, manifest, ["Patient"])


def test_missing_or_garbage_credentials_are_401_on_every_route(service: RuntimeProcess) -> None:
    base = fhir_base(service)
    routes = [
        ("GET", f"{base}/$export"),
        ("POST", f"{base}/$export"),
        ("GET", f"{base}/Patient/$export"),
        ("GET", f"{base}/Group/g1/$export"),
        ("GET", f"{base}/$export-status/{'0' * 32}"),
        ("DELETE", f"{base}/$export-status/{'0' * 32}"),
        ("GET", f"{base}/$export-file/{'0' * 32}/Patient-1.ndjson"),
    ]
    with httpx.Client(timeout=30) as http:
        for method, url in routes:
            r = http.request(method, url, headers={"Accept": FHIR_JSON, "Prefer": "respond-async"})
            assert outcome(r, 401)[0]["code"] == "login", (method, url)
            assert r.headers["WWW-Authenticate"] == "Bearer"
        for authorization in ("Bearer garbage", "Bearer", "Basic dXNlcjpwYXNz"):
            r = http.get(routes[0][1], headers={"Authorization": authorization})
            outcome(r, 401)
            assert r.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
        outcome(http.get(routes[0][1], headers={"x-functions-key": "not-the-key"}), 401)


def test_another_client_cannot_see_an_export(rs: BulkClient, es: BulkClient, service: RuntimeProcess) -> None:
    status_url = rs.start("$export", {"_type": "Encounter"})
    manifest = rs.manifest(status_url)
    file_url = manifest["output"][0]["url"]

    outcome(es.http.get(status_url, headers=es.auth()), 404)
    outcome(es.http.get(file_url, headers=es.auth()), 404)
    outcome(es.http.delete(status_url, headers=es.auth()), 404)
    # Still there for its owner, and for the service's own key holders.
    assert rs.http.get(status_url, headers=rs.auth()).status_code == 200
    assert rs.http.get(file_url, headers=rs.auth()).status_code == 200
    key = {"x-functions-key": service.function_key}
    assert httpx.get(status_url, headers=key).status_code == 200
    r = rs.http.delete(status_url, headers=rs.auth())
    assert r.status_code == 202, r.text
    outcome(rs.http.get(status_url, headers=rs.auth()), 404)


def test_the_function_key_still_opens_the_front_door(service: RuntimeProcess, rs: BulkClient) -> None:
    base = fhir_base(service)
    headers = {"Accept": FHIR_JSON, "Prefer": "respond-async"}
    r = httpx.get(
        f"{base}/$export", params={"_type": "Patient", "code": service.function_key}, headers=headers
    )
    assert r.status_code == 202, r.text
    status_url = r.headers["Content-Location"]
    assert "smart_client" not in job_labels(service, status_url)
    with httpx.Client(timeout=30, headers={"x-functions-key": service.function_key}) as http:
        r = http.get(status_url)
        assert r.status_code in (200, 202), r.text
        # A SMART client does not see a key holder's export.
        outcome(rs.http.get(status_url, headers=rs.auth()), 404)
        assert http.delete(status_url).status_code == 202
