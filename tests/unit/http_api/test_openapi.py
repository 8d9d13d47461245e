"""The OpenAPI document (`shared.openapi_spec`, served by `http_api/openapi.py`) against the app.

Both ways: every HTTP function of function_app.py is documented (its route, each method, its
auth level) and every documented operation is a function's; the document is valid OpenAPI 3.1
(schemathesis' validator) and every schema in it valid JSON Schema 2020-12; the request examples
match their schemas and are accepted by the contracts; and schemas and contracts agree on a few
hostile bodies.
"""

from __future__ import annotations

import json
import types
from collections.abc import Iterator
from typing import Any

import azure.functions as func
import jsonschema_rs
import pytest
import schemathesis

from http_api import openapi
from scripts.settings_reference import app_functions
from shared import openapi_spec
from shared.batch_contracts import parse_batch_request
from shared.contracts import parse_export_request
from shared.errors import ValidationError

pytestmark = pytest.mark.unit

SERVER = "http://127.0.0.1:7071/api"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
# What each host auth level is documented as. The front door's routes are anonymous at the host
# and check a SMART token or one of their own keys themselves (`http_api.fhir._authorized`).
SECURITY = {"function": openapi_spec.KEY, "admin": openapi_spec.ADMIN}
SELF_CHECKED = "fhir_export_"


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    return openapi_spec.document(SERVER)


def served_routes() -> set[tuple[str, str, str, str]]:
    """(path, method, function, auth level) of every HTTP function of function_app.py."""
    routes = set()
    for name, bindings in app_functions():
        for binding in bindings:
            if binding.get("type") == "httpTrigger":
                level = str(binding.get("authLevel") or "function").lower()
                for method in binding.get("methods") or METHODS:
                    routes.add((f"/{binding.get('route') or name}", method.lower(), name, level))
    return routes


def documented(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def test_every_http_function_is_documented_and_every_operation_is_served(document: dict[str, Any]) -> None:
    served = {(path, method, function) for path, method, function, _ in served_routes()}
    described = {(path, method, op["x-function"]) for path, method, op in documented(document)}
    assert not served - described, f"HTTP functions missing from the document: {sorted(served - described)}"
    assert not described - served, f"documented operations no function serves: {sorted(described - served)}"


def test_each_operation_names_its_functions_auth_level(document: dict[str, Any]) -> None:
    levels = {(path, method): (function, level) for path, method, function, level in served_routes()}
    for path, method, op in documented(document):
        function, level = levels[(path, method)]
        if level == "anonymous":
            expected = (
                openapi_spec.FRONT_DOOR if function.startswith(SELF_CHECKED) else openapi_spec.ANONYMOUS
            )
        else:
            expected = SECURITY[level]
        assert op["security"] == expected, f"{method.upper()} {path} ({function}, {level})"


def test_operation_ids_are_unique(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in documented(document)]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)


def _schemas(node: Any) -> Iterator[dict[str, Any]]:
    """Every Schema Object of the document: components, parameters, media types, headers."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "schema" and isinstance(value, dict):
                yield value
            elif key == "schemas" and isinstance(value, dict):
                yield from value.values()
            else:
                yield from _schemas(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schemas(value)


def test_the_document_is_valid_openapi_3_1_and_its_schemas_valid_json_schema(
    document: dict[str, Any],
) -> None:
    assert document["openapi"].startswith("3.1.")
    schemathesis.openapi.from_dict(document).validate()  # the OAS 3.1 meta-schema
    schemas = list(_schemas(document))
    assert len(schemas) > 50
    for schema in schemas:
        jsonschema_rs.meta.validate(schema)
    text = json.dumps(document)
    for reference in {part.split('"', 1)[0] for part in text.split('"$ref": "#/')[1:]}:
        node: Any = document
        for key in reference.split("/"):
            assert isinstance(node, dict) and key in node, f"unresolved $ref #/{reference}"
            node = node[key]


def validator(document: dict[str, Any], name: str) -> jsonschema_rs.Validator:
    """A validator of components.schemas[name], its $refs resolved within the document."""
    root = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema_rs.validator_for(root)


def test_the_examples_match_their_schemas_and_the_contracts_accept_them(document: dict[str, Any]) -> None:
    validator(document, "ExportRequest").validate(openapi_spec.EXPORT_EXAMPLE)
    validator(document, "BatchRequest").validate(openapi_spec.BATCH_EXAMPLE)
    request, _ = parse_export_request(
        openapi_spec.EXPORT_EXAMPLE,
        default_base_url="http://127.0.0.1:8080/fhir",
        default_container="exports",
    )
    assert request.source.types == ("Patient", "Observation")
    batch, items, _ = parse_batch_request(
        openapi_spec.BATCH_EXAMPLE, job_id="j1", default_container="exports"
    )
    assert batch.item_count == len(items) == 2


def _with(body: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of `body` with the field at the dotted `path` set to `value` (None: removed)."""
    copy: dict[str, Any] = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = copy
    for key in parents:
        node = node[key]
    if value is None:
        node.pop(last)
    else:
        node[last] = value
    return copy


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("source.types", []),
        ("source.types", ["patient"]),
        ("source.types", ["Patient", "Patient"]),
        ("source.page_size", 0),
        ("source.page_size", "100"),
        ("source.since", "2024-01-31"),
        ("source.extra", 1),
        ("destination.container", "Not_A_Container"),
        ("destination.secret", ""),
        ("options.parallel_types", 17),
        ("options.retry.max_attempts", 0),
        ("requested_by", "nobody"),
        ("requested_by", None),
        ("labels", {"bad key": "x"}),
        ("schema_version", 2),
    ],
)
def test_schema_and_contract_refuse_the_same_export_bodies(
    document: dict[str, Any], path: str, value: Any
) -> None:
    body = _with(openapi_spec.EXPORT_EXAMPLE, path, value)
    assert not validator(document, "ExportRequest").is_valid(body)
    with pytest.raises(ValidationError):
        parse_export_request(body, default_base_url="http://127.0.0.1:8080/fhir", default_container="exports")


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("items", []),
        ("items", ["a", "a"]),
        ("source.kind", "ftp"),
        ("source.container", None),
        ("source", {"kind": "local", "container": "acquired"}),
        ("options.concurrency", 33),
        ("options.partial_failure", "maybe"),
        ("destination", {"kind": "http_put", "base_url": "http://127.0.0.1:1/dav", "url_template": "/x"}),
        ("destination", {"kind": "http_put", "url_template": "{base}/{name}"}),
    ],
)
def test_schema_and_contract_refuse_the_same_batch_bodies(
    document: dict[str, Any], path: str, value: Any
) -> None:
    body = _with(openapi_spec.BATCH_EXAMPLE, path, value)
    assert not validator(document, "BatchRequest").is_valid(body)
    with pytest.raises(ValidationError):
        parse_batch_request(body, job_id="j1", default_container="exports")


def test_the_endpoint_serves_the_document_for_the_public_base(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = types.SimpleNamespace(public_base_url=None)
    monkeypatch.setattr("http_api.callers.get_deps", lambda: types.SimpleNamespace(settings=settings))
    req = func.HttpRequest("GET", "http://127.0.0.1:7072/api/openapi.json?x=1", body=b"")
    answer = openapi.openapi_document(req)
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    served = json.loads(answer.get_body())
    assert served["servers"] == [{"url": "http://127.0.0.1:7072/api", "description": "This instance"}]
    assert {**served, "servers": None} == {**openapi_spec.document("http://x/api"), "servers": None}
    # A Host header naming another site is never reflected; PUBLIC_BASE_URL wins when set.
    forged = func.HttpRequest("GET", "http://attacker.example/api/openapi.json", body=b"")
    assert json.loads(openapi.openapi_document(forged).get_body())["servers"][0]["url"] == "/api"
    settings.public_base_url = "https://bulk.example.org"
    assert (
        json.loads(openapi.openapi_document(forged).get_body())["servers"][0]["url"]
        == "https://bulk.example.org/api"
    )
