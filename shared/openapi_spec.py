"""The OpenAPI 3.1 document of the HTTP API, served by `http_api/openapi.py` at GET /api/openapi.json.

Written from the routes (`http_api/*.py`) and their contracts; each operation's `operationId` is
the name of the Functions function that serves it, and its paths are the function routes under
the host's route prefix (the server URL ends with it, `/api`). `tests/unit/http_api/test_openapi.py`
checks both ways that every HTTP function is documented with its route, methods and auth level,
and that the document is valid OpenAPI 3.1; `tests/fuzz/` runs schemathesis over it against
the local runtime (no 5xx, every error body well-formed).

Errors: the job API answers `{"error": {"code", "message", "field"?}}` (`Error`); the FHIR front
door answers OperationOutcomes (`application/fhir+json`); the SMART token endpoint RFC 6749
errors. A 401 (no or a wrong key), 404 (no such route) or 413 (body too large) from the host
itself has no body. The document holds no secret and no setting's value; the request schemas
are in `shared.openapi_schemas`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Final

from shared.jobs import JobState
from shared.jobstore import JobKind
from shared.openapi_schemas import SCHEMAS, ref
from shared.outbox import OutboxState
from shared.source_listing import MAX_LIMIT

__all__ = ["OPENAPI_VERSION", "document"]

OPENAPI_VERSION: Final = "3.1.0"
Json = dict[str, Any]

FHIR_JSON: Final = "application/fhir+json"
JOB_ID: Final = "^[A-Za-z0-9_-]{1,64}$"  # `shared.job_api.valid_job_id`
SESSION_ID: Final = "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # `http_api.sessions._ID`
FHIR_ID: Final = "^[A-Za-z0-9\\-.]{1,64}$"  # `shared.bulkdata_source.FHIR_ID`

# Security requirements: any one scheme of a list will do.
KEY: Final[list[Json]] = [{"functionKey": []}, {"functionKeyQuery": []}]
ADMIN: Final[list[Json]] = [{"masterKey": []}, {"masterKeyQuery": []}]
FRONT_DOOR: Final[list[Json]] = [{"smartBearer": []}, {"frontDoorKey": []}, {"frontDoorKeyQuery": []}]
ANONYMOUS: Final[list[Json]] = []

_SECURITY_SCHEMES: Final = {
    "functionKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "A function key (or the host's master key) of the Functions host.",
    },
    "functionKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "code",
        "description": "The same key, as ?code=",
    },
    "masterKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "The host's master key (auth level admin: the operator endpoints).",
    },
    "masterKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "code",
        "description": "The master key, as ?code=",
    },
    "smartBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "A SMART Backend Services access token from POST /fhir/auth/token.",
    },
    "frontDoorKey": {
        "type": "apiKey",
        "in": "header",
        "name": "x-functions-key",
        "description": "One of FHIR_FRONTDOOR_KEYS (the service's own clients).",
    },
    "frontDoorKeyQuery": {
        "type": "apiKey",
        "in": "query",
        "name": "code",
        "description": "The same key, as ?code=",
    },
}


def _content(schema: Json, media_type: str = "application/json") -> Json:
    return {media_type: {"schema": schema}}


def _answer(description: str, schema: Json | None = None, media_type: str = "application/json",
            headers: Json | None = None) -> Json:  # fmt: skip
    response: Json = {"description": description}
    if schema is not None:
        response["content"] = _content(schema, media_type)
    if headers:
        response["headers"] = headers
    return response


def _shared(name: str) -> Json:
    return {"$ref": f"#/components/responses/{name}"}


_HEADER_TEXT: Final = {"schema": {"type": "string"}}

_RESPONSES: Final = {
    "BadRequest": _answer("The request is invalid; `field` names what to change.", ref("Error")),
    "NotFound": _answer("No such resource.", ref("Error")),
    "Conflict": _answer(
        "The resource's state does not allow this (e.g. a retry of a running job).", ref("Error")
    ),
    "Unavailable": _answer("A dependency is unavailable for a moment; try again.", ref("Error")),
    "NoKey": _answer(
        "From the host: no key, or not a key of this auth level (no body); or from the app, when "
        "REQUIRE_IDENTITY is set and the caller has no identity (an Error)."
    ),
    "Forbidden": _answer("The caller may not do this (another's name, a system job).", ref("Error")),
    "TooLarge": _answer("The body is larger than the route takes.", ref("Error")),
    "TooMany": _answer(
        "Over the caller's request rate (RATE_LIMIT_PER_MINUTE), or, for a new job or a retry, the "
        "requester has MAX_OPEN_JOBS_PER_USER unfinished jobs; `Retry-After` says when to come back.",
        ref("Error"),
    ),
    "FhirBadRequest": _answer(
        "Refused; every issue names its parameter.", ref("OperationOutcome"), FHIR_JSON
    ),
    "FhirUnauthorized": _answer(
        "No or an invalid access token or key.",
        ref("OperationOutcome"),
        FHIR_JSON,
        {"WWW-Authenticate": _HEADER_TEXT},
    ),
    "FhirForbidden": _answer(
        "The access token's scopes do not cover it.", ref("OperationOutcome"), FHIR_JSON
    ),
    "FhirNotFound": _answer("No such export (or not this client's).", ref("OperationOutcome"), FHIR_JSON),
    "FhirUnavailable": _answer(
        "The FHIR source or a dependency is unavailable; try again.",
        ref("OperationOutcome"),
        FHIR_JSON,
        {"Retry-After": _HEADER_TEXT},
    ),
}


def _query(name: str, schema: Json, description: str = "") -> Json:
    parameter: Json = {"name": name, "in": "query", "required": False, "schema": schema}
    if description:
        parameter["description"] = description
    return parameter


def _path(name: str, schema: Json | None = None, description: str = "") -> Json:
    parameter: Json = {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}
    if description:
        parameter["description"] = description
    return parameter


_LIMIT: Final = _query("limit", {"type": "integer", "minimum": 1, "maximum": 500, "default": 50})
_CONTINUATION: Final = _query(
    "continuation", {"type": "string", "maxLength": 1024}, "From the previous page's `continuation`."
)
_DAY_OR_INSTANT: Final = {
    "type": "string",
    "anyOf": [{"format": "date"}, {"format": "date-time"}],
    "examples": ["2026-12-01", "2026-12-01T08:00:00Z"],
}
_JOB_FILTERS: Final = [
    _query("state", {"enum": [s.value for s in JobState]}),
    _query("requested_by", {"type": "string", "maxLength": 254}),
    _query("label", {"type": "string", "pattern": "^[^=]+=.*$", "maxLength": 320}, "`key=value`"),
    _query("created_from", _DAY_OR_INSTANT, "A day (from its start) or an ISO 8601 instant with a zone."),
    _query("created_to", _DAY_OR_INSTANT, "A day (to its end) or an ISO 8601 instant with a zone."),
    _LIMIT,
    _query("continuation", {"type": "string", "pattern": "^[0-9]{11}-[A-Za-z0-9_-]{1,64}$"}),
]
_JOB_ID_PARAM: Final = _path("id", {"type": "string", "pattern": JOB_ID}, "A job id (uuid hex).")
_LISTING_PARAMS: Final = [
    _query(
        "recursive", {"enum": ["true", "false", "1", "0", "yes", "no"]}, "Every file below, not one level."
    ),
    _query("limit", {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": 500}),
    _CONTINUATION,
]
_KICKOFF_PARAMS: Final = [
    _query(
        "_type", {"type": "string"}, "Resource types, comma-separated (default: every one the source has)."
    ),
    _query("_since", {"type": "string", "format": "date-time"}, "Only resources changed after this instant."),
    _query("_outputFormat", {"enum": ["application/fhir+ndjson", "application/ndjson", "ndjson"]}),
    _query("_typeFilter", {"type": "string"}, "`Type?query` for one of the exported types."),
    _query("_elements", {"type": "string"}, "`name` or `Type.name`, comma-separated."),
    _query("patient", {"type": "string"}, "`Patient/<id>` references, comma-separated."),
    _query("includeAssociatedData", {"type": "string"}, "Not supported: refused unless handling=lenient."),
    {
        "name": "Prefer",
        "in": "header",
        "required": True,
        "schema": {
            "enum": ["respond-async", "respond-async, handling=lenient", "respond-async, handling=strict"]
        },
        "description": "Bulk Data kick-offs are asynchronous. The request must also send "
        "`Accept: application/fhir+json`.",
    },
]
_KICKOFF_BODY: Final = {
    "required": False,
    "description": "A FHIR Parameters resource with the same parameters as the query.",
    "content": {FHIR_JSON: {"schema": ref("Parameters")}, "application/json": {"schema": ref("Parameters")}},
}


def _accepted(*operations: str) -> Json:
    """202 of a job submission, with links to the operations that take the new job's id."""
    answer = _answer(
        "Accepted: the job is queued; poll `status_url` (also in Location).",
        ref("Accepted"),
        headers={"Location": _HEADER_TEXT, "Retry-After": _HEADER_TEXT},
    )
    answer["links"] = {
        op: {"operationId": op, "parameters": {"id": "$response.body#/id"}} for op in operations
    }
    return answer


# What a caller of the job API may meet on any keyed route (shared.callers, shared.rate_limit).
_CALLER_ERRORS: Final = {"401": _shared("NoKey"), "403": _shared("Forbidden"), "429": _shared("TooMany")}
_KEYED_ERRORS: Final = {
    "400": _shared("BadRequest"),
    **_CALLER_ERRORS,
    "413": _shared("TooLarge"),
    "503": _shared("Unavailable"),
}


def _op(function: str, summary: str, tag: str, security: list[Json], responses: Json,
        parameters: list[Json] | None = None, body: Json | None = None) -> Json:  # fmt: skip
    """One operation; `function` is the Functions function that serves it (`x-function`, and the
    operationId unless the function serves several methods)."""
    operation: Json = {"operationId": function, "x-function": function, "summary": summary, "tags": [tag],
                       "security": security}  # fmt: skip
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    operation["responses"] = responses
    return operation


def _json_body(schema: str, example: Json | None = None, *, required: bool = True) -> Json:
    media: Json = {"schema": ref(schema)}
    if example is not None:
        media["example"] = example
    return {"required": required, "content": {"application/json": media}}


# A valid body each (the fuzz run's examples phase sends them; the unit test parses them with
# the contracts): the default FHIR source and container of the running service.
EXPORT_EXAMPLE: Final = {
    "source": {"types": ["Patient", "Observation"], "since": "2024-01-31T00:00:00Z", "page_size": 100},
    "destination": {"kind": "blob", "container": "exports", "path_prefix": "openapi-example"},
    "options": {"parallel_types": 2, "retry": {"first_retry_interval_ms": 1000, "max_attempts": 3}},
    "requested_by": "engineer@example.com",
    "labels": {"project": "example"},
}
EXAMPLE_GROUP: Final = "example-group"
BATCH_EXAMPLE: Final = {
    "source": {"kind": "blob", "container": "acquired"},
    "items": ["session-1/img-001.dcm", "session-1/img-002.dcm"],
    "destination": {"kind": "blob", "container": "exports", "path_prefix": "openapi-batch"},
    "options": {"concurrency": 2, "partial_failure": "succeed"},
    "requested_by": "tech@example.com",
    "labels": {"project": "p1"},
}


def _job_paths() -> Json:
    status = _answer("The job's status document.", ref("JobStatus"))
    cancel = _answer("Cancel requested (or the job had ended): its status document.", ref("JobStatus"))
    retry = _json_body("RetrySecrets", required=False)
    return {
        "/exports": {
            "post": _op("submit_export", "Start a FHIR export job", "exports", KEY,
                        {"202": _accepted("get_export", "cancel_export", "get_job", "retry_job"),
                         **_KEYED_ERRORS, "409": _shared("Conflict")},
                        body=_json_body("ExportRequest", EXPORT_EXAMPLE)),
            "get": _op("list_exports", "List export jobs, newest first", "exports", KEY,
                       {"200": _answer("One page of export jobs.", ref("JobList")), **_KEYED_ERRORS},
                       _JOB_FILTERS),
        },
        "/exports/{id}": {
            "parameters": [_JOB_ID_PARAM],
            "get": _op("get_export", "An export job's status", "exports", KEY,
                       {"200": status, **_CALLER_ERRORS, "404": _shared("NotFound")}),
            "delete": _op("cancel_export", "Cancel an export job", "exports", KEY,
                          {"202": cancel, **_CALLER_ERRORS, "404": _shared("NotFound")}),
        },
        "/exports/{id}/retry": {
            "parameters": [_JOB_ID_PARAM],
            "post": _op("retry_export", "Queue a failed export again: succeeded types are kept, the others resume",
                        "exports", KEY,
                        {"202": status, **_KEYED_ERRORS, "404": _shared("NotFound"), "409": _shared("Conflict")},
                        body=retry),
        },
        "/jobs": {
            "get": _op("list_jobs", "List jobs of every kind, newest first", "jobs", KEY,
                       {"200": _answer("One page of jobs.", ref("JobList")), **_KEYED_ERRORS},
                       [_query("kind", {"enum": [k.value for k in JobKind]}),
                        *_JOB_FILTERS]),
        },
        "/jobs/{id}": {
            "parameters": [_JOB_ID_PARAM],
            "get": _op("get_job", "A job's status, in its kind's shape", "jobs", KEY,
                       {"200": status, **_CALLER_ERRORS, "404": _shared("NotFound")}),
            "delete": _op("cancel_job", "Cancel a job that has not ended", "jobs", KEY,
                          {"202": cancel, **_CALLER_ERRORS, "404": _shared("NotFound")}),
        },
        "/jobs/{id}/retry": {
            "parameters": [_JOB_ID_PARAM],
            "post": _op("retry_job", "Queue a failed job again (with its secrets again)", "jobs", KEY,
                        {"202": status, **_KEYED_ERRORS, "404": _shared("NotFound"),
                         "409": _shared("Conflict")},
                        body=retry),
        },
        "/batches": {
            "post": _op("submit_batch", "Start a batch: files to a destination", "batches", KEY,
                        {"202": _accepted("get_batch", "cancel_batch", "get_job", "retry_batch"),
                         **_KEYED_ERRORS, "409": _shared("Conflict")},
                        body=_json_body("BatchRequest", BATCH_EXAMPLE)),
        },
        "/batches/{id}": {
            "parameters": [_JOB_ID_PARAM],
            "get": _op("get_batch", "A batch, its counts and up to 1,000 items", "batches", KEY,
                       {"200": _answer("The batch's status.", ref("BatchStatus")), **_KEYED_ERRORS,
                        "404": _shared("NotFound")},
                       [_query("items_offset", {"type": "integer", "minimum": 0, "maximum": 1_000_000})]),
            "delete": _op("cancel_batch", "Cancel a batch", "batches", KEY,
                          {"202": _answer("Cancel requested.", ref("BatchStatus")), "401": _shared("NoKey"),
                           "404": _shared("NotFound"), "503": _shared("Unavailable")}),
        },
        "/batches/{id}/retry": {
            "parameters": [_JOB_ID_PARAM],
            "post": _op("retry_batch", "Re-run the items of a failed batch that did not succeed", "batches",
                        KEY,
                        {"202": _answer("Queued again.", ref("BatchStatus")), **_KEYED_ERRORS,
                         "404": _shared("NotFound"), "409": _shared("Conflict")},
                        body=retry),
        },
    }  # fmt: skip


def _operator_paths() -> Json:
    session_id = _path("id", {"type": "string", "pattern": SESSION_ID})
    key = _path("key", {"type": "string", "maxLength": 256}, "An outbox key, `{job}:{run}:report|alert`.")
    return {
        "/sessions/{id}": {
            "get": _op("get_session", "Every app's export of a session", "sessions", KEY,
                       {"200": _answer("The session's exports.", ref("SessionStatus")), **_KEYED_ERRORS,
                        "404": _shared("NotFound")},
                       [session_id]),
        },
        "/studies/{id}": {
            "get": _op("get_study", "Every session of a study", "sessions", KEY,
                       {"200": _answer("The study's sessions.", ref("StudyStatus")), **_KEYED_ERRORS,
                        "404": _shared("NotFound")},
                       [session_id]),
        },
        "/notifications": {
            "get": _op("list_notifications", "Outcome mails by state (default dead)", "notifications", ADMIN,
                       {"200": _answer("One page of mails.", ref("NotificationList")), **_KEYED_ERRORS},
                       [_query("state", {"enum": [s.value for s in OutboxState]}),
                        _LIMIT, _CONTINUATION]),
        },
        "/notifications/{key}/retry": {
            "post": _op("retry_notification", "Queue a dead mail again", "notifications", ADMIN,
                        {"202": _answer("Queued again.", ref("Notification")), **_KEYED_ERRORS,
                         "404": _shared("NotFound")},
                        [key]),
        },
        "/notifications/{key}": {
            "delete": _op("delete_notification", "Drop a mail in any state", "notifications", ADMIN,
                          {"204": _answer("Deleted."), **_KEYED_ERRORS, "404": _shared("NotFound")},
                          [key]),
        },
        "/sources/blob": {
            "get": _op("list_blob_source", "Folders and files under a prefix of a container", "sources", KEY,
                       {"200": _answer("One page of entries.", ref("Listing")), **_KEYED_ERRORS,
                        "404": _shared("NotFound")},
                       [{**_query("container", {"type": "string", "maxLength": 63}), "required": True},
                        _query("prefix", {"type": "string", "maxLength": 1024}), *_LISTING_PARAMS]),
        },
        "/sources/local": {
            "get": _op("list_local_source", "Folders and files of a folder under BATCH_LOCAL_ROOT", "sources",
                       KEY,
                       {"200": _answer("One page of entries.", ref("Listing")), **_KEYED_ERRORS,
                        "404": _shared("NotFound")},
                       [_query("path", {"type": "string", "maxLength": 1024}), *_LISTING_PARAMS]),
        },
        "/health": {
            "get": _op("health", "Settings, storage, durable runtime, secret store and SMTP", "monitoring",
                       ANONYMOUS,
                       {"200": _answer("Ok, or degraded (secret store or SMTP).", ref("Health")),
                        "503": _answer("A critical check failed.", ref("Health"))}),
        },
        "/metrics": {
            "get": _op("metrics", "Figures in the Prometheus text format (0.0.4)", "monitoring", KEY,
                       {"200": _answer("The figures.", {"type": "string"}, "text/plain"),
                        "401": _shared("NoKey"), "503": _shared("Unavailable")}),
        },
        "/openapi.json": {
            "get": _op("openapi_document", "This document", "meta", ANONYMOUS,
                       {"200": _answer("The OpenAPI 3.1 document.", {"type": "object"})}),
        },
    }  # fmt: skip


def _fhir_paths() -> Json:
    kickoff_answers = {
        "202": _answer("Accepted; poll Content-Location.", ref("OperationOutcome"), FHIR_JSON,
                       {"Content-Location": _HEADER_TEXT}),
        "400": _shared("FhirBadRequest"),
        "401": _shared("FhirUnauthorized"),
        "404": _shared("FhirNotFound"),
        "503": _shared("FhirUnavailable"),
    }  # fmt: skip

    def kickoff(function: str, summary: str, parameters: list[Json]) -> Json:
        return {
            "get": _op(function, summary, "fhir", FRONT_DOOR, kickoff_answers, parameters),
            "post": {
                **_op(function, summary, "fhir", FRONT_DOOR, kickoff_answers, parameters, _KICKOFF_BODY),
                "operationId": f"{function}_post",  # one function serves GET and POST
            },
        }

    export_id = _path(
        "id", {"type": "string", "maxLength": 256}, "The id in the kick-off's Content-Location."
    )
    group = _path("group_id", {"type": "string", "pattern": FHIR_ID, "examples": [EXAMPLE_GROUP]})
    paths: Json = {
        "/fhir/$export": kickoff("fhir_export_system", "System-level Bulk Data kick-off", _KICKOFF_PARAMS),
        "/fhir/Patient/$export": kickoff("fhir_export_patient", "Patient-level kick-off", _KICKOFF_PARAMS),
        "/fhir/Group/{group_id}/$export": kickoff(
            "fhir_export_group", "Group-level kick-off (the group's members)", [group, *_KICKOFF_PARAMS]
        ),
        "/fhir/$export-status/{id}": {
            "parameters": [export_id],
            "get": _op("fhir_export_status", "A bulk export's status", "fhir", FRONT_DOOR, {
                "200": _answer("Complete: the manifest.", ref("Manifest"), headers={"Expires": _HEADER_TEXT}),
                "202": _answer("In progress.",
                               headers={"X-Progress": _HEADER_TEXT, "Retry-After": _HEADER_TEXT}),
                "401": _shared("FhirUnauthorized"),
                "404": _shared("FhirNotFound"),
                "500": _answer("The export failed (the Bulk Data error answer).", ref("OperationOutcome"),
                               FHIR_JSON),
            }),
            "delete": _op("fhir_export_delete", "Cancel or forget a bulk export", "fhir", FRONT_DOOR, {
                "202": _answer("Deleted: the status URL answers 404 from now on.", ref("OperationOutcome"),
                               FHIR_JSON),
                "401": _shared("FhirUnauthorized"),
                "404": _shared("FhirNotFound"),
            }),
        },
        "/fhir/$export-file/{id}/{name}": {
            "get": _op("fhir_export_file", "One output or error file of a complete export", "fhir",
                       FRONT_DOOR,
                       {"200": _answer("The file.", {"type": "string"}, "application/fhir+ndjson"),
                        "401": _shared("FhirUnauthorized"), "403": _shared("FhirForbidden"),
                        "404": _shared("FhirNotFound")},
                       [export_id, _path("name", {"type": "string", "maxLength": 256}, "`Type-1.ndjson`")]),
        },
        "/fhir/metadata": {
            "get": _op("fhir_metadata", "The front door's CapabilityStatement", "fhir", ANONYMOUS,
                       {"200": _answer("The CapabilityStatement.", ref("CapabilityStatement"), FHIR_JSON)}),
        },
        "/fhir/auth/token": {
            "post": _op("fhir_auth_token", "SMART Backend Services token (client_credentials)", "smart",
                        ANONYMOUS,
                        {"200": _answer("An access token (300 s).", ref("Token")),
                         "400": _answer("Refused (RFC 6749 §5.2).", ref("OAuthError")),
                         "401": _answer("The client or its assertion is not accepted.", ref("OAuthError"))},
                        body={"required": True, "content": {
                            "application/x-www-form-urlencoded": {"schema": ref("TokenRequest")}}}),
        },
        "/fhir/.well-known/smart-configuration": {
            "get": _op("fhir_smart_configuration", "SMART discovery", "smart", ANONYMOUS,
                       {"200": _answer("Where the token endpoint is and what it accepts.",
                                       ref("SmartConfiguration"))}),
        },
    }  # fmt: skip
    return paths


def _web_paths() -> Json:
    page = {
        "200": _answer("The page (no data, no secret: it calls the API with the key a person enters).",
                       {"type": "string"}, "text/html", {"ETag": _HEADER_TEXT}),
        "304": _answer("Not modified (If-None-Match)."),
    }  # fmt: skip
    if_none_match = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"}}

    def web(function: str, summary: str, *parameters: Json) -> Json:
        return {"get": _op(function, summary, "web", ANONYMOUS, page, [*parameters, if_none_match])}

    return {
        "/ui": web("web_work_list", "The work list"),
        "/ui/jobs/{id}": web("web_job", "One job's page", _path("id")),
        "/ui/sessions": web("web_sessions", "A study's or a session's exports (?session= or ?study=)",
                            _query("session", {"type": "string"}), _query("study", {"type": "string"})),
        "/ui/submit": web("web_submit", "The submit page"),
        "/ui/operator": web("web_operator", "The operator view"),
        "/ui/static/{file}": {
            "get": _op("web_static", "The pages' CSS and JavaScript", "web", ANONYMOUS,
                       {"200": {"description": "The asset.", "headers": {"ETag": _HEADER_TEXT}, "content": {
                           "text/css": {"schema": {"type": "string"}},
                           "text/javascript": {"schema": {"type": "string"}}}},
                        "304": _answer("Not modified."), "404": _shared("NotFound")},
                       [_path("file", {"type": "string", "maxLength": 128,
                                       "examples": ["style.css", "common.js"]}),
                        if_none_match]),
        },
    }  # fmt: skip


@functools.cache
def _document() -> Json:
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Bulk export service",
            "version": "1",
            "description": "Bulk exports from FHIR servers, batches of files, auto-export sessions, and a "
            'FHIR Bulk Data (IG v2) front door. Job API errors are `{"error": {"code", "message", '
            '"field"?}}`; front-door errors are OperationOutcomes.',
        },
        "tags": [
            {"name": n}
            for n in (
                "exports",
                "jobs",
                "batches",
                "sessions",
                "notifications",
                "sources",
                "monitoring",
                "fhir",
                "smart",
                "web",
                "meta",
            )
        ],  # fmt: skip
        "security": KEY,
        "paths": {**_job_paths(), **_operator_paths(), **_fhir_paths(), **_web_paths()},
        "components": {
            "schemas": SCHEMAS,
            "responses": _RESPONSES,
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }


def document(server_url: str) -> Json:
    """The document with `server_url` (the API's base, ending with the route prefix) as its server."""
    doc = copy.deepcopy(_document())
    doc["servers"] = [{"url": server_url.rstrip("/"), "description": "This instance"}]
    return doc
