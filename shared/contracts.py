"""Frozen, versioned contracts: the export request, and what activities and orchestrators exchange.

Two shapes of the request exist. The API shape (`parse_export_request`) carries secret VALUES in
`source.auth_secret` and `destination.secret`; it returns them apart, as `SubmittedSecrets`, so
they never enter a record. The record shape (`to_dict`/`from_dict`) carries only secret NAMES.
Each shape rejects the other's secret fields as unknown: a client cannot point a job at a stored
secret by name, and a record can never hold a value. Every error is a `ValidationError` whose
`field` is the path of the offending field (`options.retry.max_attempts`, `source.types[2]`).

The activity inputs (`PageTask`, `CommitTask`) are at the end; the checkpoint and result contracts
live in `shared.progress` and are re-exported, so `shared.contracts` is the one import for all.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import (
    AfterValidator,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)

from shared._strict import (
    RESOURCE_TYPE,
    SCHEMA_VERSION,
    Contract,
    Count,
    Items,
    SchemaVersion,
    check_container_name,
    check_email,
    check_http_url,
    check_instant,
    checked,
    fail,
    nested,
    replace,
    validate,
)
from shared.destinations.http_put import PutDestinationSpec
from shared.errors import ValidationError
from shared.progress import (
    CommitResult,
    ExportOutcome,
    FileState,
    OutputFile,
    PageResult,
    TypeCheckpoint,
    file_name,
)
from shared.retry import DEFAULT as DEFAULT_RETRY
from shared.retry import RetryPolicy
from shared.secrets.base import MAX_SECRET_VALUE_LENGTH, check_secret_name
from shared.sources import check_element, split_type_filters

__all__ = [
    "SCHEMA_VERSION",
    "BlobDestinationSpec",
    "CommitResult",
    "CommitTask",
    "ExportOptions",
    "ExportOutcome",
    "ExportRequest",
    "FhirSourceSpec",
    "FileState",
    "OutputFile",
    "PageResult",
    "PageTask",
    "SubmittedSecrets",
    "TypeCheckpoint",
    "file_name",
    "parse_export_request",
    "with_secret_names",
]

MIB: Final = 1024 * 1024
# Labels are for people and dashboards; the limits keep records and custom status small.
LABEL_KEY: Final = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_MAX_LABELS: Final = 20
_SEARCH_PARAM: Final = re.compile(r"^[a-z_][A-Za-z0-9_-]{0,63}$")
MAX_PATIENTS: Final = 1_000_000
# Stands for the name a submitted PUT secret will get (`with_secret_names` replaces it before the
# request is stored): a PUT spec with auth must name its secret.
_PENDING_SECRET_NAME: Final = "pending-destination-secret"

HttpUrl = Annotated[
    str, Field(min_length=1, max_length=2048), AfterValidator(lambda v: checked(check_http_url, v))
]
Email = Annotated[str, Field(min_length=1, max_length=254), AfterValidator(lambda v: checked(check_email, v))]
SecretName = Annotated[
    str, Field(min_length=1, max_length=127), AfterValidator(lambda v: checked(check_secret_name, v))
]
TypeName = Annotated[str, Field(min_length=1, max_length=64)]
Instant = Annotated[
    str, Field(min_length=1, max_length=64), AfterValidator(lambda v: checked(check_instant, v))
]
Element = Annotated[str, Field(min_length=1, max_length=128)]
Filter = Annotated[str, Field(min_length=1, max_length=2048)]


def _take_secret(data: dict[str, Any], key: str, info: ValidationInfo, slot: str) -> None:
    """API shape: move the secret VALUE at `key` into the parse context, never into the model."""
    value = data.pop(key, None)
    if info.context is None or not info.context.get("api"):
        if value is not None:
            fail("unknown field", key)  # the record shape holds names only
        return
    if value is not None and (
        not isinstance(value, str) or not value or len(value) > MAX_SECRET_VALUE_LENGTH
    ):
        fail(f"must be a string of 1..{MAX_SECRET_VALUE_LENGTH} characters", key)
    info.context["secrets"][slot] = value


def _refuse_in_api(data: Mapping[str, Any], key: str, info: ValidationInfo) -> None:
    """The API takes values, never names: a client must not point a job at a stored secret."""
    if info.context is not None and info.context.get("api") and key in data:
        fail("unknown field", key)


class _Patients(Contract):
    """`{"count": 2000, "search_params": {"Patient": "_id", "Observation": "patient"}}`."""

    count: Annotated[int, Field(ge=1, le=MAX_PATIENTS)]
    search_params: dict[str, Annotated[str, Field(min_length=1, max_length=64)]]


class FhirSourceSpec(Contract):
    """Where to read: a FHIR server, the resource types, and how to page through them."""

    kind: Literal["fhir"] = "fhir"
    base_url: HttpUrl
    types: Annotated[Items[TypeName], Field(min_length=1, max_length=200)]
    since: Instant | None = None  # ISO-8601 instant; the source searches `_lastUpdated=gt<since>`
    # `_typeFilter` queries such as "Patient?active=true"; several for one type are ORed.
    type_filters: Annotated[Items[Filter], Field(max_length=200)] = ()
    page_size: Annotated[int, Field(ge=1, le=10_000)] = 1000
    auth_secret_name: SecretName | None = None
    # The Bulk Data `_elements` (`name` for every type, `Patient.name` for one), sent as `_elements`.
    elements: Annotated[Items[Element], Field(max_length=100)] = ()
    # Restricted to a patient list: how many ids, and each type's patient search parameter. The
    # ids themselves are in the service's storage (`shared.workstore`, stored by the FHIR front
    # door's kick-off under the job id), never in the request: it travels through history.
    # The JSON shape is `patients: {"count": ..., "search_params": {type: param}}` (`_Patients`).
    patient_count: Annotated[int, Field(ge=0, le=MAX_PATIENTS)] = 0
    patient_search: Items[tuple[str, str]] = ()

    _path: ClassVar[str] = "source"

    @property
    def patient_params(self) -> dict[str, str]:
        return dict(self.patient_search)

    @classmethod
    def _prepare(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.context is None:  # a constructor call: the attribute shape
            return data
        for key in ("patient_count", "patient_search"):
            if key in data:
                fail("unknown field", key)
        _refuse_in_api(data, "auth_secret_name", info)
        _take_secret(data, "auth_secret", info, "source_auth")
        if "base_url" not in data and info.context.get("default_base_url") is not None:
            data["base_url"] = info.context["default_base_url"]
        patients = data.pop("patients", None)
        if patients is not None:
            read = nested(_Patients, patients, info, "patients")
            data["patient_count"] = read.count
            data["patient_search"] = tuple(read.search_params.items())
        return data

    @field_validator("types")
    @classmethod
    def _check_types(cls, types: tuple[str, ...]) -> tuple[str, ...]:
        for i, name in enumerate(types):
            if not RESOURCE_TYPE.match(name):
                fail("must be a FHIR resource type name", i)
            if name in types[:i]:
                fail("is listed twice", i)
        return types

    @field_validator("elements")
    @classmethod
    def _check_elements(cls, elements: tuple[str, ...]) -> tuple[str, ...]:
        for i, element in enumerate(elements):
            checked(lambda f, v: check_element(v, f), element, i)
        return elements

    @model_validator(mode="after")
    def _check_against_types(self) -> FhirSourceSpec:
        for i, given in enumerate(self.type_filters):
            for query in split_type_filters([given]):  # `A?x=1,A?y=2` is two queries, ORed
                resource_type, sep, search = query.partition("?")
                if not sep or not search or resource_type not in self.types:
                    fail("must be `Type?query` for one of source.types", f"type_filters[{i}]")
        filters = tuple(split_type_filters(self.type_filters))
        if filters != self.type_filters:
            object.__setattr__(self, "type_filters", filters)  # frozen: normalised once, here
        if self.patient_search or self.patient_count:
            params = dict(self.patient_search)
            for resource_type in self.types:
                param = params.pop(resource_type, None)
                if param is None:
                    fail("is required", f"patients.search_params.{resource_type}")
                if not _SEARCH_PARAM.match(param):
                    fail("must be a search parameter name", f"patients.search_params.{resource_type}")
            if params:
                fail("unknown field", f"patients.search_params.{next(iter(params))}")
            if self.patient_count < 1:
                fail(f"must be between 1 and {MAX_PATIENTS}", "patients.count")
            ordered = tuple((t, dict(self.patient_search)[t]) for t in self.types)
            if ordered != self.patient_search:
                object.__setattr__(self, "patient_search", ordered)
        return self

    @model_serializer(mode="wrap")
    def _dump(self, handler: Any) -> dict[str, Any]:
        data: dict[str, Any] = handler(self)
        count, search = data.pop("patient_count", 0), data.pop("patient_search", ())
        data["patients"] = {"count": count, "search_params": dict(search)} if search else None
        return data


def _check_path_prefix(_field: str, prefix: str) -> str:
    segments = prefix.split("/")
    # Blob names are flat, but "." / ".." / empty segments confuse tools that map them to folders.
    if prefix and (any(s in ("", ".", "..") for s in segments) or "\\" in prefix):
        raise ValidationError(_field, "must be folder names separated by single slashes, without . or ..")
    return prefix


class BlobDestinationSpec(Contract):
    """Where to write: a blob container and a folder in it. No secret name: managed identity."""

    kind: Literal["blob"] = "blob"
    container: Annotated[
        str, Field(max_length=63), AfterValidator(lambda v: checked(check_container_name, v))
    ]
    # "" or "a/b" (no leading or trailing slash)
    path_prefix: Annotated[
        str, Field(max_length=512), AfterValidator(lambda v: checked(_check_path_prefix, v))
    ] = ""
    secret_name: SecretName | None = None

    _path: ClassVar[str] = "destination"

    def blob_name(self, name: str) -> str:
        """The blob path of a file, e.g. `exports/2024/Patient-1.ndjson`."""
        return f"{self.path_prefix}/{name}" if self.path_prefix else name

    @classmethod
    def _prepare(cls, data: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if info.context is None:
            return data
        _refuse_in_api(data, "secret_name", info)
        _take_secret(data, "secret", info, "destination")
        if "container" not in data and info.context.get("default_container") is not None:
            data["container"] = info.context["default_container"]
        return data


def _put_destination(data: object, info: ValidationInfo) -> PutDestinationSpec:
    """The hand-written HTTP PUT spec, read by its own `from_dict`; in the API shape its `secret`
    value is taken out and stands in as a pending name until `with_secret_names`."""
    if isinstance(data, PutDestinationSpec):
        return data
    if not isinstance(data, Mapping):
        fail("must be an object")
    fields = dict(data)
    if info.context is not None and info.context.get("api"):
        value = fields.pop("secret", None)
        if value is not None and (
            not isinstance(value, str) or not value or len(value) > MAX_SECRET_VALUE_LENGTH
        ):
            fail("must be a non-empty string", "secret")
        if "secret_name" in fields:
            fail("is not accepted; send the value as `secret`", "secret_name")
        auth = fields.get("auth", "none")
        if auth != "none" and value is None:
            fail(f"is required with auth {auth!r}", "secret")
        info.context["secrets"]["destination"] = value
        fields["secret_name"] = _PENDING_SECRET_NAME if value is not None else None
    return checked(lambda path, d: PutDestinationSpec.from_dict(d, path), fields)


def _any_destination(data: object, info: ValidationInfo) -> BlobDestinationSpec | PutDestinationSpec:
    if isinstance(data, BlobDestinationSpec | PutDestinationSpec):
        return data
    if isinstance(data, Mapping) and data.get("kind") == "http_put":
        return _put_destination(data, info)
    return nested(BlobDestinationSpec, data, info, "")


# A Blob or HTTP PUT destination; the PUT spec stays a hand-written dataclass (`shared.destinations`).
Destination = Annotated[
    BlobDestinationSpec | PutDestinationSpec,
    PlainValidator(_any_destination, json_schema_input_type=BlobDestinationSpec | PutDestinationSpec),
    PlainSerializer(lambda d: d.to_dict(), return_type=dict[str, Any]),
]


class _Retry(Contract):
    first_retry_interval_ms: Annotated[int, Field(ge=100, le=3_600_000)] = (
        DEFAULT_RETRY.first_retry_interval_ms
    )
    max_attempts: Annotated[int, Field(ge=1, le=20)] = DEFAULT_RETRY.max_attempts


def _retry(data: object, info: ValidationInfo) -> RetryPolicy:
    if isinstance(data, RetryPolicy):
        return data
    read = nested(_Retry, data, info, "")
    return RetryPolicy(first_retry_interval_ms=read.first_retry_interval_ms, max_attempts=read.max_attempts)


# `shared.retry.RetryPolicy` (a plain dataclass) read and written as `{"first_retry_interval_ms", "max_attempts"}`.
Retry = Annotated[
    RetryPolicy,
    PlainValidator(_retry, json_schema_input_type=_Retry),
    PlainSerializer(
        lambda r: {"first_retry_interval_ms": r.first_retry_interval_ms, "max_attempts": r.max_attempts},
        return_type=dict[str, int],
    ),
]


class ExportOptions(Contract):
    # Upper bound: a file bigger than 16 GiB is unwieldy for every consumer we know of.
    max_file_bytes: Annotated[int, Field(ge=1024, le=16 * 1024 * MIB)] = 64 * MIB  # microsoft/fhir-server's
    commit_every_pages: Annotated[int, Field(ge=1, le=10_000)] = 10  # as in microsoft/fhir-server
    parallel_types: Annotated[int, Field(ge=1, le=16)] = 4
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 3  # consecutive failed attempts
    retry: Retry = DEFAULT_RETRY
    # Another unfinished job may write under the same destination prefix (shared.destination_claims).
    share_destination: bool = False

    _path: ClassVar[str] = "options"


def _labels(value: object) -> object:
    """`{"team": "x"}` (the JSON shape) -> sorted `(key, value)` pairs: immutable and hashable."""
    if not isinstance(value, Mapping):
        return value
    if len(value) > _MAX_LABELS:
        fail(f"must have at most {_MAX_LABELS} entries")
    for key, text in value.items():
        if not isinstance(key, str) or not LABEL_KEY.match(key):
            fail("label names are 1..63 letters, digits, _ . or -", str(key))
        if not isinstance(text, str) or not 1 <= len(text) <= 256:
            fail("must be a string of 1..256 characters", key)
    return tuple(sorted(value.items()))


Labels = Annotated[
    tuple[tuple[str, str], ...],
    PlainValidator(
        lambda v: _labels(_labels_tuple(v)),
        json_schema_input_type=dict[str, Annotated[str, Field(max_length=256)]],
    ),
    PlainSerializer(dict, return_type=dict[str, str]),
]


def _labels_tuple(value: object) -> object:
    if isinstance(value, tuple):
        if not all(isinstance(p, tuple) and len(p) == 2 for p in value):
            fail("must be an object of label names to texts")
        return dict(value)
    if not isinstance(value, Mapping):
        fail("must be an object")
    return value


class ExportRequest(Contract):
    """One export job's parameters as stored in the job record and the orchestration input."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    source: FhirSourceSpec
    destination: Destination
    options: ExportOptions = ExportOptions()
    requested_by: Email
    labels: Labels = ()  # sorted (key, value) pairs


class SubmittedSecrets(Contract):
    """Secret values taken out of an API request; repr never shows them. Never dumped."""

    source_auth: Annotated[str | None, Field(repr=False)] = None
    destination: Annotated[str | None, Field(repr=False)] = None


def parse_export_request(
    body: Mapping[str, Any],
    *,
    default_base_url: str | None = None,
    default_container: str | None = None,
) -> tuple[ExportRequest, SubmittedSecrets]:
    """Validate an API body. Returns the request (secret names unset) and the secret values.

    `default_base_url` and `default_container` (from Settings) fill `source.base_url` and
    `destination.container` when the body leaves them out.
    """
    context: dict[str, Any] = {
        "api": True,
        "secrets": {},
        "default_base_url": default_base_url,
        "default_container": default_container,
    }
    request = validate(ExportRequest, body, "", context)
    return request, SubmittedSecrets(**context["secrets"])


def with_secret_names(
    request: ExportRequest, *, auth_secret_name: str | None, destination_secret_name: str | None
) -> ExportRequest:
    """The request with the names under which the submitted secrets were stored."""
    if auth_secret_name is not None:
        check_secret_name("source.auth_secret_name", auth_secret_name)
    if destination_secret_name is not None:
        check_secret_name("destination.secret_name", destination_secret_name)
    return replace(
        request,
        source=replace(request.source, auth_secret_name=auth_secret_name),
        destination=replace(request.destination, secret_name=destination_secret_name),
    )


# --- activity inputs: one model in per activity ------------------------------------------------


class PageTask(Contract):
    """Read page `page` of `type` at `cursor` (None: the first page of search `query`) and stage
    it as a block of file `file_sequence`. The block id derives from (type, file_sequence, page),
    so a retried task replaces its block."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    job_id: Annotated[str, Field(min_length=1, max_length=256)]
    request: ExportRequest
    type: TypeName
    cursor: Annotated[str, Field(min_length=1, max_length=16_384)] | None
    page: Count
    file_sequence: Annotated[int, Field(ge=1, le=2**53)]
    query: Count = 0


class CommitTask(Contract):
    """Commit `file.blocks` (the whole list, in order) as the content of `file.name`."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    job_id: Annotated[str, Field(min_length=1, max_length=256)]
    request: ExportRequest
    file: FileState
