"""Property-based fuzzing of the HTTP API with schemathesis, driven by its OpenAPI document.

The whole service runs as in tests/e2e (the runtime on function_app.py, Azurite, a small FHIR test
server as the default source); the document it serves at /api/openapi.json must be the one the
tests are generated from, its server that runtime. Per operation schemathesis sends the
document's examples, its coverage cases (boundaries, missing and wrong-typed fields, unexpected
methods) and a derandomized Hypothesis run of valid and invalid requests. Every answer must be
no server error, and every 4xx well-formed: the job API's `{"error": {"code", "message",
"field"?}}`, an OperationOutcome on the FHIR front door, an RFC 6749 error from the token
endpoint; only the host's own refusals (401 without a key, 404 for a method no function serves,
413/414/431 over its limits) may have no body, and a request line or header over the host's
8 KiB limit may be refused in the host's words. A failure shows schemathesis' report with a curl
command that reproduces it (with the key of a service started the same way, e.g. `make run`'s),
and for a 5xx the end of the runtime's log.

Every URL the generator can put in a job is refused by the outbound policy unless it is on
127.0.0.1 (OUTBOUND_ALLOW), so nothing leaves the machine; a job pointed at a port where nothing
listens must still be answered with 202 or a 4xx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import note
from schemathesis import Case, CheckContext, Response
from schemathesis.checks import not_a_server_error

from shared import openapi_spec
from tests.support.azurite import Azurite
from tests.support.export_env import start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess

pytestmark = [pytest.mark.fuzz, pytest.mark.azurite]

# Small on purpose: kick-offs that pass validation start real exports, which must end quickly.
COUNTS = {"Patient": 4, "Observation": 6, "Encounter": 2}
MEMBERS = ["patient-00000001", "patient-00000003"]
SEED = 114  # fixed (with derandomized generation): the same cases on every run
EXAMPLES_PER_OPERATION = 25
FHIR_JSON = "application/fhir+json"

# The host's own refusals, which have no body: no or a wrong key, a body, request line or headers
# over the host's limits.
HOST_EMPTY = frozenset({401, 413, 414, 431})
# A request line or header line longer than this is refused by the host before any function runs
# (aiohttp's max_line_size in the self-hosted runtime; Kestrel's limit is 8 KiB too).
HOST_LINE_LIMIT = 8190


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer(COUNTS, groups={openapi_spec.EXAMPLE_GROUP: MEMBERS}) as server:
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    tmp = tmp_path_factory.mktemp("fuzz")
    local = tmp / "local"
    (local / "session-1").mkdir(parents=True)
    (local / "session-1" / "img-001.dcm").write_bytes(b"\x00" * 128)
    rt = start_service(azurite, fhir, tmp, BATCH_LOCAL_ROOT=str(local))
    try:
        yield rt
    finally:
        rt.stop()


# The document as the runtime serves it, for the server URL `make run` would have: schemathesis'
# pytest integration needs the schema when tests are collected (its lazy `from_fixture` does not
# work with this pytest), so `served_base` checks that the running service serves exactly this
# document, and every request is sent to that service's base URL.
DOCUMENT = openapi_spec.document("http://127.0.0.1:7071/api")
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 60,
        "generation": {
            "mode": "all",  # valid requests and hostile ones
            "max-examples": EXAMPLES_PER_OPERATION,
            "deterministic": True,
            "database": "none",  # no examples replayed from an earlier run: the budget is fixed
            "with-security-parameters": False,  # the test sends the real keys (`_headers`)
        },
        "phases": {"stateful": {"enabled": False}},
    }
)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=CONFIG)


@pytest.fixture(scope="module")
def served_base(service: RuntimeProcess) -> str:
    """The service's API base, once its /api/openapi.json is known to be the fuzzed document."""
    answer = httpx.get(service.url("api/openapi.json"), timeout=30)
    assert answer.status_code == 200, answer.text
    served = answer.json()
    # The document points at the instance it was read from: every request goes to 127.0.0.1.
    assert [s["url"] for s in served["servers"]] == [service.url("api")], served["servers"]
    assert {**served, "servers": DOCUMENT["servers"]} == DOCUMENT, "the served document is not the fuzzed one"
    return service.url("api")


def _headers(case: Case, service: RuntimeProcess) -> dict[str, str]:
    """The key the operation's security names (the master key for admin operations); the FHIR
    front door also gets the Accept a Bulk Data client sends (OpenAPI cannot document it)."""
    operation: dict[str, Any] = case.operation.definition.raw
    security = operation.get("security") or []
    names = {name for requirement in security for name in requirement}
    headers: dict[str, str] = {}
    if "masterKey" in names:
        headers["x-functions-key"] = service.master_key
    elif names:
        headers["x-functions-key"] = service.function_key
    if case.operation.path.startswith("/fhir/"):
        headers["Accept"] = FHIR_JSON
    return headers


def _over_host_limits(response: Response) -> bool:
    """Whether the request was too big for the host to hand to a function at all."""
    request = response.request
    if len(f"{request.method} {request.path_url} HTTP/1.1") > HOST_LINE_LIMIT:
        return True
    return any(len(f"{name}: {value}") > HOST_LINE_LIMIT for name, value in request.headers.items())


def _error_shape(path: str) -> str:
    if path == "/fhir/auth/token":
        return "oauth"
    return "fhir" if path.startswith("/fhir/") else "job-api"


def well_formed_error(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """Every 4xx carries the error body of its API; only the host's own refusals are empty."""
    status = response.status_code
    if status < 400 or status >= 500:
        return None
    served = {m.lower() for m in case.operation.schema.raw_schema["paths"].get(case.operation.path, {})}
    if not response.content and (
        status in HOST_EMPTY or (status == 404 and case.method.lower() not in served)
    ):
        return None  # the host: no key, too big, or a method no function serves
    if status in (400, 414, 431) and _over_host_limits(response):
        return None  # the host's refusal of a request over its limits, in the host's own words
    text = response.content.decode("utf-8", errors="replace")
    assert "Traceback (most recent call last)" not in text, f"{status} shows a stack trace"
    media_type = (response.headers.get("content-type") or [""])[0].split(";")[0].strip().lower()
    try:
        body = json.loads(text)
    except ValueError:
        raise AssertionError(
            f"{status} with a body that is not JSON ({media_type}): {text[:300]!r}"
        ) from None
    shape = _error_shape(case.operation.path)
    if shape == "fhir":
        assert media_type == FHIR_JSON, f"{status} OperationOutcome served as {media_type!r}"
        assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", body
        issues = body.get("issue")
        assert isinstance(issues, list) and issues, f"an OperationOutcome without issues: {body}"
        for issue in issues:
            assert isinstance(issue, dict), body
            assert issue.get("severity") in ("fatal", "error", "warning", "information"), body
            assert isinstance(issue.get("code"), str) and issue["code"], body
            assert isinstance(issue.get("diagnostics", ""), str), body
    elif shape == "oauth":
        assert media_type == "application/json", f"{status} OAuth error served as {media_type!r}"
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], body
        assert isinstance(body.get("error_description", ""), str), body
    else:
        assert media_type == "application/json", f"{status} error served as {media_type!r}"
        assert isinstance(body, dict) and set(body) == {"error"}, f"not {{'error': {{...}}}}: {body}"
        error = body["error"]
        assert isinstance(error, dict), body
        assert set(error) <= {"code", "message", "field"}, f"unexpected error fields: {body}"
        assert isinstance(error.get("code"), str) and error["code"], body
        assert isinstance(error.get("message"), str) and error["message"], body
        assert isinstance(error.get("field", ""), str), body
    return None


@schema.parametrize()
def test_no_server_error_and_well_formed_errors(
    case: Case, service: RuntimeProcess, served_base: str
) -> None:
    response = case.call(base_url=served_base, headers=_headers(case, service))
    try:
        case.validate_response(response, checks=[not_a_server_error, well_formed_error])
    except Exception:
        if response.status_code >= 500:  # the traceback is in the runtime's log, not the answer
            note(f"runtime log (end):\n{service.log_text()[-4000:]}")  # shown for the final example only
        raise
