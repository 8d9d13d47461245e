"""The Bulk Data front door's own CapabilityStatement (`GET [base]/metadata`), pure.

It says what a conformance suite or a Bulk Data client looks for before a kick-off: an
`instance` of FHIR 4.0.1 that `instantiates` the IG's bulk-data CapabilityStatement, offers the
three export operations with their OperationDefinition canonicals, and is protected by SMART
Backend Services, whose token endpoint the `oauth-uris` extension names. Nothing here reads the
source: the statement is the same for every caller, so the route can be anonymous.
"""

from __future__ import annotations

from typing import Any, Final

__all__ = ["BULK_DATA_CAPABILITY", "OPERATIONS", "capability_statement"]

BULK_DATA_CAPABILITY: Final = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data"
_OPERATION_DEFINITION: Final = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/"
# (name, OperationDefinition id, the resource type it is invoked on; None: the system level)
OPERATIONS: Final = (
    ("export", "export", None),
    ("patient-export", "patient-export", "Patient"),
    ("group-export", "group-export", "Group"),
)
_OAUTH_URIS: Final = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
_SECURITY_SERVICE: Final = "http://terminology.hl7.org/CodeSystem/restful-security-service"
# When this statement last changed (CapabilityStatement.date is required).
_DATE: Final = "2026-01-15"


def _operation(name: str, definition: str) -> dict[str, str]:
    return {"name": name, "definition": f"{_OPERATION_DEFINITION}{definition}"}


def capability_statement(base: str) -> dict[str, Any]:
    """The statement for the front door at `base` (e.g. `http://127.0.0.1:7071/api/fhir`)."""
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": _DATE,
        "publisher": "Bulk export service",
        "kind": "instance",
        "instantiates": [BULK_DATA_CAPABILITY],
        "software": {"name": "Bulk export service (FHIR Bulk Data front door)"},
        "implementation": {"description": "FHIR Bulk Data Access IG v2.0.0 export", "url": base},
        "fhirVersion": "4.0.1",
        "format": ["json", "ndjson"],
        "rest": [
            {
                "mode": "server",
                "security": {
                    "service": [
                        {
                            "coding": [{"system": _SECURITY_SERVICE, "code": "SMART-on-FHIR"}],
                            "text": "SMART Backend Services (OAuth 2.0 client credentials)",
                        }
                    ],
                    "extension": [
                        {
                            "url": _OAUTH_URIS,
                            "extension": [{"url": "token", "valueUri": f"{base}/auth/token"}],
                        }
                    ],
                },
                "resource": [
                    {"type": on, "operation": [_operation(name, definition)]}
                    for name, definition, on in OPERATIONS
                    if on is not None
                ],
                "operation": [_operation(name, definition) for name, definition, _ in OPERATIONS],
            }
        ],
    }
