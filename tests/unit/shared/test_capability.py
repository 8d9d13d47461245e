"""The front door's CapabilityStatement: what Bulk Data clients and conformance suites look for."""

from __future__ import annotations

import pytest

from shared.capability import capability_statement

pytestmark = pytest.mark.unit

BASE = "http://127.0.0.1:7071/api/fhir"
DEFINITIONS = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"


def test_the_statement_instantiates_the_bulk_data_capability() -> None:
    statement = capability_statement(BASE)
    assert statement["resourceType"] == "CapabilityStatement"
    assert (statement["kind"], statement["fhirVersion"], statement["status"]) == (
        "instance",
        "4.0.1",
        "active",
    )
    assert {"json", "ndjson"} <= set(statement["format"])
    assert statement["instantiates"] == ["http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"]
    assert statement["date"] and statement["implementation"]["url"] == BASE


def test_the_three_export_operations_with_their_definitions() -> None:
    rest = capability_statement(BASE)["rest"][0]
    assert rest["mode"] == "server"
    assert rest["operation"] == [
        {"name": "export", "definition": f"{DEFINITIONS}export"},
        {"name": "patient-export", "definition": f"{DEFINITIONS}patient-export"},
        {"name": "group-export", "definition": f"{DEFINITIONS}group-export"},
    ]
    by_type = {r["type"]: r["operation"][0]["name"] for r in rest["resource"]}
    assert by_type == {"Patient": "patient-export", "Group": "group-export"}


def test_security_names_smart_and_the_token_endpoint() -> None:
    security = capability_statement(BASE)["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = security["extension"]
    assert oauth["url"] == "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
    assert oauth["extension"] == [{"url": "token", "valueUri": f"{BASE}/auth/token"}]
