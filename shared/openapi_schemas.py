"""The JSON Schemas (2020-12) of the OpenAPI document's `components.schemas` (`shared.openapi_spec`).

Request schemas are the API shapes the contracts accept (`shared.contracts.parse_export_request`,
`shared.batch_contracts.parse_batch_request`): the same required fields, bounds, patterns and
enums, with `additionalProperties: false` where the contracts refuse unknown fields, so that a
generator (schemathesis) makes requests that pass validation as well as ones that must not.
Semantic checks the schemas cannot say (the outbound policy, destination claims, a `_typeFilter`
naming a listed type) stay in the contracts; the descriptions name them. Enumerations and limits
are imported from the modules that enforce them, so the document cannot drift from them.
Response schemas are shapes, open to additions (clients must ignore fields they do not know).
"""

from __future__ import annotations

from typing import Any, Final

from shared import _strict, contracts
from shared.batch_contracts import MAX_ITEMS
from shared.contracts import MAX_PATIENTS
from shared.destinations.http_put import AUTH_KINDS, CHECKSUM_HEADERS
from shared.jobs import JobState
from shared.jobstore import JobKind
from shared.outbox import OutboxState
from shared.secrets.base import MAX_SECRET_VALUE_LENGTH
from shared.smart_auth import SCOPES_SUPPORTED

__all__ = ["SCHEMAS", "ref"]

Schema = dict[str, Any]

# The contracts' own patterns (Python `re` syntax that is also ECMA-262), so the two cannot drift.
RESOURCE_TYPE: Final = _strict.RESOURCE_TYPE.pattern
CONTAINER: Final = _strict.CONTAINER_NAME.pattern
INSTANT: Final = _strict.INSTANT.pattern
LABEL_KEY: Final = contracts.LABEL_KEY.pattern
EMAIL: Final = _strict.EMAIL.pattern
GIB16: Final = 16 * 1024 * 1024 * 1024


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _text(max_length: int = 2048, **more: Any) -> Schema:
    return {"type": "string", "minLength": 1, "maxLength": max_length, **more}


def _int(lo: int, hi: int, **more: Any) -> Schema:
    return {"type": "integer", "minimum": lo, "maximum": hi, **more}


def _object(properties: dict[str, Schema], required: tuple[str, ...] = (), **more: Any) -> Schema:
    """A closed object (the contracts refuse unknown fields)."""
    schema: Schema = {"type": "object", "properties": properties, "additionalProperties": False, **more}
    if required:
        schema["required"] = list(required)
    return schema


def _open(properties: dict[str, Schema], required: tuple[str, ...] = (), **more: Any) -> Schema:
    """A response object: the fields named are there; more may be added later."""
    schema: Schema = {"type": "object", "properties": properties, **more}
    if required:
        schema["required"] = list(required)
    return schema


_URL: Final = _text(2048, format="uri", description="An absolute http(s) URL without credentials.")
_SECRET: Final = _text(MAX_SECRET_VALUE_LENGTH, writeOnly=True)
_EMAIL: Final = _text(254, format="email", pattern=EMAIL)

_RETRY: Final = _object(
    {
        "first_retry_interval_ms": _int(100, 3_600_000, default=5000),
        "max_attempts": _int(1, 20, default=5),
    },
    description="Attempts per page (export) or item (batch), and the first wait between them.",
)

_LABELS: Final = {
    "type": "object",
    "maxProperties": 20,
    "propertyNames": {"pattern": LABEL_KEY},
    "additionalProperties": _text(256),
    "description": "Up to 20 labels for people and dashboards (listings filter on `label=k=v`).",
}

_BLOB_DESTINATION: Final = _object(
    {
        "kind": {"const": "blob", "default": "blob"},
        "container": {
            "type": "string",
            "pattern": CONTAINER,
            "maxLength": 63,
            "description": "Default EXPORT_DEFAULT_CONTAINER; DESTINATION_CONTAINERS and the storage "
            "policy decide which containers may be written.",
        },
        "path_prefix": {"type": "string", "maxLength": 512, "default": "", "examples": ["exports/2024"]},
        "secret": {
            **_SECRET,
            "description": "A storage connection string or SAS URL (stored in the secret store; "
            "never shown again). Without it: the service's own storage (managed identity).",
        },
    },
)

_PUT_DESTINATION: Final = _object(
    {
        "kind": {"const": "http_put"},
        "base_url": _URL,
        "url_template": _text(
            2048,
            pattern="^\\{base\\}/",
            description="`{base}/...` with `{path}`, `{name}`, `{index}` (batches) or label placeholders.",
            examples=["{base}/projects/{project}/{name}"],
        ),
        "auth": {"enum": list(AUTH_KINDS), "default": "none"},
        "secret": {
            **_SECRET,
            "description": '"user:password" (basic), the token (bearer) or a JSON object of headers '
            "(headers); required unless auth is none.",
        },
        "create_parents": {"type": "boolean", "default": False},
        "checksum_header": {"enum": list(CHECKSUM_HEADERS.values())},
        "verify": {"type": "boolean", "default": True},
    },
    ("kind", "base_url", "url_template"),
)

_DESTINATION: Final = {
    "oneOf": [ref("BlobDestination"), ref("PutDestination")],
    "description": "A blob container (kind blob, the default) or an HTTP PUT / WebDAV server.",
}

_FHIR_SOURCE: Final = _object(
    {
        "kind": {"const": "fhir", "default": "fhir"},
        "base_url": {**_URL, "description": "Default EXPORT_DEFAULT_FHIR_BASE_URL; OUTBOUND_ALLOW applies."},
        "types": {
            "type": "array",
            "minItems": 1,
            "maxItems": 200,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": RESOURCE_TYPE, "maxLength": 64},
        },
        "since": {
            "type": "string",
            "pattern": INSTANT,
            "maxLength": 64,
            "examples": ["2024-01-31T00:00:00Z"],
        },
        "type_filters": {
            "type": "array",
            "maxItems": 200,
            "items": _text(2048, examples=["Patient?active=true"]),
            "description": "`Type?query` for one of `types` each; several for one type are ORed.",
        },
        "page_size": _int(1, 10_000, default=1000),
        "auth_secret": {**_SECRET, "description": "A bearer token for the source (secret store)."},
        "elements": {"type": "array", "maxItems": 100, "items": _text(128)},
        "patients": _object(
            {
                "count": _int(1, MAX_PATIENTS),
                "search_params": {"type": "object", "additionalProperties": _text(64)},
            },
            ("count", "search_params"),
        ),
    },
    ("types",),
)

_EXPORT_OPTIONS: Final = _object(
    {
        "max_file_bytes": _int(1024, GIB16, default=64 * 1024 * 1024),
        "commit_every_pages": _int(1, 10_000, default=10),
        "parallel_types": _int(1, 16, default=4),
        "failure_threshold": _int(1, 100, default=3),
        "retry": ref("RetryPolicy"),
        "share_destination": {"type": "boolean", "default": False},
    },
)

_EXPORT_REQUEST: Final = _object(
    {
        "schema_version": _int(1, 1),
        "source": ref("FhirSource"),
        "destination": ref("Destination"),
        "options": ref("ExportOptions"),
        "requested_by": _EMAIL,
        "labels": ref("Labels"),
    },
    ("source", "destination", "requested_by"),
)

_BATCH_SOURCE: Final = _object(
    {
        "kind": {"enum": ["blob", "url", "local"]},
        "container": _text(63),
        "secret": {
            **_SECRET,
            "description": "blob: a connection string or SAS URL; url: a bearer token; local: none.",
        },
    },
    ("kind",),
    # A container for (and only for) a blob source.
    **{
        "if": {"properties": {"kind": {"const": "blob"}}},
        "then": {"required": ["container"]},
        "else": {"not": {"required": ["container"]}},
    },
)

_BATCH_OPTIONS: Final = _object(
    {
        "concurrency": _int(1, 32, default=4),
        "retry": ref("RetryPolicy"),
        "failure_threshold": _int(1, MAX_ITEMS),
        "partial_failure": {"enum": ["fail", "succeed"], "default": "fail"},
        "share_destination": {"type": "boolean", "default": False},
    },
)

_BATCH_REQUEST: Final = _object(
    {
        "source": ref("BatchSource"),
        "items": {
            "type": "array",
            "minItems": 1,
            "maxItems": MAX_ITEMS,
            "uniqueItems": True,
            "items": _text(1024),
            "description": "Blob names, URLs or paths under BATCH_LOCAL_ROOT, each once.",
        },
        "destination": ref("Destination"),
        "options": ref("BatchOptions"),
        "requested_by": _EMAIL,
        "labels": ref("Labels"),
    },
    ("source", "items", "destination", "requested_by"),
)

_RETRY_SECRETS: Final = _object(
    {
        "source": _object({"auth_secret": _SECRET, "secret": _SECRET}),
        "destination": _object({"secret": _SECRET}),
    },
    description="The secrets of a failed job again (they were deleted when it failed): "
    "`source.auth_secret` of an export, `source.secret` of a batch, `destination.secret`.",
)

_ERROR: Final = _object(
    {
        "error": _object(
            {
                "code": {"type": "string", "examples": ["invalid_request", "not_found", "conflict"]},
                "message": {"type": "string"},
                "field": {"type": "string", "description": "The offending field, e.g. `source.types[2]`."},
            },
            ("code", "message"),
        )
    },
    ("error",),
)

_ISSUE: Final = _open(
    {
        "severity": {"enum": ["fatal", "error", "warning", "information"]},
        "code": {"type": "string"},
        "diagnostics": {"type": "string"},
        "expression": {"type": "array", "items": {"type": "string"}},
    },
    ("severity", "code"),
)

_OPERATION_OUTCOME: Final = _open(
    {
        "resourceType": {"const": "OperationOutcome"},
        "issue": {"type": "array", "minItems": 1, "items": _ISSUE},
    },
    ("resourceType", "issue"),
)

_PARAMETERS: Final = _open(
    {
        "resourceType": {"const": "Parameters"},
        "parameter": {
            "type": "array",
            "items": _open(
                {
                    "name": {
                        "enum": ["_type", "_since", "_outputFormat", "_typeFilter", "_elements", "patient"]
                    },
                    "valueString": {"type": "string"},
                    "valueInstant": {"type": "string", "pattern": INSTANT},
                    "valueReference": _open({"reference": {"type": "string"}}),
                },
                ("name",),
                minProperties=2,
                maxProperties=2,
            ),
        },
    },
    ("resourceType",),
)

_STATE: Final = {"enum": [s.value for s in JobState]}
_JOB_HEADER: Final[dict[str, Schema]] = {
    "id": {"type": "string"},
    "kind": {"enum": [k.value for k in JobKind]},
    "state": _STATE,
    "requested_by": {"type": "string"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "created": {"type": "string"},
}

_JOB_STATUS: Final = _open(
    {
        **_JOB_HEADER,
        "updated": {"type": ["string", "null"]},
        "started": {"type": ["string", "null"]},
        "finished": {"type": ["string", "null"]},
        "cancel_requested": {"type": "boolean"},
        "waiting": {
            "type": ["string", "null"],
            "description": "While the job is queued behind the caps on running jobs: why.",
        },
        "origin": {"type": ["string", "null"], "description": "The entry point that made the job."},
        "request": {"type": "object", "description": "The job's request with secret names, never values."},
        "progress": {"type": "object", "description": "An export's progress per resource type."},
        "last_error": {"type": ["string", "null"]},
        "output": {"type": "array", "items": {"type": "object"}},
    },
    ("id", "kind", "state", "requested_by", "created", "request"),
    description="One job's status document, in its kind's shape (export, batch or session).",
)

_BATCH_STATUS: Final = _open(
    {
        **_JOB_STATUS["properties"],
        "counts": {"type": "object", "additionalProperties": {"type": "integer"}},
        "bytes": _open({"done": {"type": "integer"}, "total": {"type": "integer"}}),
        "items": {
            "type": "array",
            "items": _open(
                {
                    "index": {"type": "integer"},
                    "item": {"type": "string"},
                    "state": {"type": "string"},
                    "bytes_done": {"type": "integer"},
                    "attempts": {"type": "integer"},
                    "last_error": {"type": ["string", "null"]},
                }
            ),
        },
        "items_offset": {"type": "integer"},
        "items_more": {"type": "boolean"},
    },
    ("id", "kind", "state", "counts", "items"),
)

_JOB_LIST: Final = _open(
    {
        "jobs": {"type": "array", "items": _open(_JOB_HEADER, ("id", "kind", "state"))},
        "continuation": {"type": ["string", "null"]},
    },
    ("jobs", "continuation"),
)

_ACCEPTED: Final = _open(
    {"id": {"type": "string"}, "state": {"const": "queued"}, "status_url": {"type": "string"}},
    ("id", "state", "status_url"),
)

_NOTIFICATION: Final = _open(
    {
        "key": {"type": "string"},
        "job_id": {"type": "string"},
        "to": {"type": "array", "items": {"type": "string"}},
        "subject": {"type": "string"},
        "state": {"enum": [s.value for s in OutboxState]},
        "attempts": {"type": "integer"},
        "next_attempt_at": {"type": ["string", "null"]},
        "last_error": {"type": ["string", "null"]},
        "created": {"type": "string"},
        "updated": {"type": "string"},
        "sent_at": {"type": ["string", "null"]},
    },
    ("key", "job_id", "state"),
)

_LISTING: Final = _open(
    {
        "source": {"enum": ["blob", "local"]},
        "entries": {
            "type": "array",
            "items": _open(
                {
                    "name": {"type": "string"},
                    "kind": {"enum": ["file", "folder"]},
                    "size": {"type": ["integer", "null"]},
                    "content_type": {"type": ["string", "null"]},
                },
                ("name", "kind"),
            ),
        },
        "continuation": {"type": ["string", "null"]},
    },
    ("source", "entries", "continuation"),
)

_SESSION_STATUS: Final = _open(
    {
        "session_id": {"type": "string"},
        "study_id": {"type": ["string", "null"]},
        "state": {"type": "string"},
        "apps": {"type": "array", "items": {"type": "object"}},
    },
    ("session_id", "state", "apps"),
)

_STUDY_STATUS: Final = _open(
    {
        "study_id": {"type": "string"},
        "state": {"type": "string"},
        "sessions": {"type": "array", "items": {"type": "object"}},
    },
    ("study_id", "state", "sessions"),
)

_HEALTH: Final = _open(
    {
        "status": {"enum": ["ok", "degraded", "unavailable"]},
        "checks": {"type": "object", "additionalProperties": {"type": "string"}},
    },
    ("status", "checks"),
)

_MANIFEST: Final = _open(
    {
        "transactionTime": {"type": "string"},
        "request": {"type": "string"},
        "requiresAccessToken": {"type": "boolean"},
        "output": {"type": "array", "items": _open({"type": {"type": "string"}, "url": {"type": "string"}})},
        "error": {"type": "array", "items": _open({"type": {"type": "string"}, "url": {"type": "string"}})},
    },
    ("transactionTime", "request", "requiresAccessToken", "output", "error"),
    description="The Bulk Data complete-status manifest.",
)

_TOKEN_REQUEST: Final = {
    "type": "object",
    "properties": {
        "grant_type": {"const": "client_credentials"},
        "client_assertion_type": {"const": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
        "client_assertion": _text(16_384, description="A JWT signed with RS384 or ES384 (private_key_jwt)."),
        "scope": _text(1024, examples=list(SCOPES_SUPPORTED)),
        "client_id": _text(128),
    },
    "required": ["grant_type", "client_assertion_type", "client_assertion", "scope"],
}

_TOKEN: Final = _open(
    {
        "access_token": {"type": "string"},
        "token_type": {"const": "bearer"},
        "expires_in": {"type": "integer"},
        "scope": {"type": "string"},
    },
    ("access_token", "token_type", "expires_in", "scope"),
)

_OAUTH_ERROR: Final = _open(
    {
        "error": {
            "enum": [
                "invalid_request",
                "invalid_client",
                "invalid_grant",
                "invalid_scope",
                "unauthorized_client",
                "unsupported_grant_type",
            ]
        },
        "error_description": {"type": "string"},
    },
    ("error",),
    description="An RFC 6749 §5.2 error.",
)

SCHEMAS: Final[dict[str, Schema]] = {
    "Error": _ERROR,
    "OperationOutcome": _OPERATION_OUTCOME,
    "OAuthError": _OAUTH_ERROR,
    "RetryPolicy": _RETRY,
    "Labels": _LABELS,
    "BlobDestination": _BLOB_DESTINATION,
    "PutDestination": _PUT_DESTINATION,
    "Destination": _DESTINATION,
    "FhirSource": _FHIR_SOURCE,
    "ExportOptions": _EXPORT_OPTIONS,
    "ExportRequest": _EXPORT_REQUEST,
    "BatchSource": _BATCH_SOURCE,
    "BatchOptions": _BATCH_OPTIONS,
    "BatchRequest": _BATCH_REQUEST,
    "RetrySecrets": _RETRY_SECRETS,
    "Accepted": _ACCEPTED,
    "JobStatus": _JOB_STATUS,
    "JobList": _JOB_LIST,
    "BatchStatus": _BATCH_STATUS,
    "SessionStatus": _SESSION_STATUS,
    "StudyStatus": _STUDY_STATUS,
    "Notification": _NOTIFICATION,
    "NotificationList": _open(
        {
            "notifications": {"type": "array", "items": ref("Notification")},
            "continuation": {"type": ["string", "null"]},
        },
        ("notifications", "continuation"),
    ),
    "Listing": _LISTING,
    "Health": _HEALTH,
    "Parameters": _PARAMETERS,
    "Manifest": _MANIFEST,
    "TokenRequest": _TOKEN_REQUEST,
    "Token": _TOKEN,
    "SmartConfiguration": _open(
        {"token_endpoint": {"type": "string"}, "grant_types_supported": {"type": "array"}},
        ("token_endpoint",),
    ),
    "CapabilityStatement": _open({"resourceType": {"const": "CapabilityStatement"}}, ("resourceType",)),
}
