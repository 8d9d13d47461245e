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
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from shared._strict import (
    RESOURCE_TYPE,
    SCHEMA_VERSION,
    ObjectReader,
    check_container_name,
    check_email,
    check_http_url,
    check_instant,
    read_schema_version,
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
_LABEL_KEY: Final = re.compile(r"^[A-Za-z0-9_.-]{1,63}$")
_MAX_LABELS: Final = 20


@dataclass(frozen=True, kw_only=True)
class FhirSourceSpec:
    """Where to read: a FHIR server, the resource types, and how to page through them."""

    kind: Literal["fhir"] = "fhir"
    base_url: str
    types: tuple[str, ...]
    since: str | None = None  # ISO-8601 instant; the source searches `_lastUpdated=gt<since>`
    # `_typeFilter` queries such as "Patient?active=true"; several for one type are ORed.
    type_filters: tuple[str, ...] = ()
    page_size: int = 1000
    auth_secret_name: str | None = None
    # The Bulk Data `_elements` (`name` for every type, `Patient.name` for one), sent as `_elements`.
    elements: tuple[str, ...] = ()
    # Restricted to a patient list: how many ids, and each type's patient search parameter. The
    # ids themselves are in the service's storage (`shared.workstore`, stored by the FHIR front
    # door's kick-off under the job id), never in the request: it travels through history.
    patient_count: int = 0
    patient_search: tuple[tuple[str, str], ...] = ()

    @property
    def patient_params(self) -> dict[str, str]:
        return dict(self.patient_search)

    def to_dict(self) -> dict[str, Any]:
        patients = None
        if self.patient_search:
            patients = {"count": self.patient_count, "search_params": self.patient_params}
        return {
            "kind": self.kind,
            "base_url": self.base_url,
            "types": list(self.types),
            "since": self.since,
            "type_filters": list(self.type_filters),
            "page_size": self.page_size,
            "auth_secret_name": self.auth_secret_name,
            "elements": list(self.elements),
            "patients": patients,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "source") -> FhirSourceSpec:
        spec, _ = _read_source(ObjectReader(data, path), api=False, default_base_url=None)
        return spec


@dataclass(frozen=True, kw_only=True)
class BlobDestinationSpec:
    """Where to write: a blob container and a folder in it. No secret name: managed identity."""

    kind: Literal["blob"] = "blob"
    container: str
    path_prefix: str = ""  # "" or "a/b" (no leading or trailing slash)
    secret_name: str | None = None

    def blob_name(self, name: str) -> str:
        """The blob path of a file, e.g. `exports/2024/Patient-1.ndjson`."""
        return f"{self.path_prefix}/{name}" if self.path_prefix else name

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "container": self.container,
            "path_prefix": self.path_prefix,
            "secret_name": self.secret_name,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "destination") -> BlobDestinationSpec:
        spec, _ = _read_destination(ObjectReader(data, path), api=False, default_container=None)
        return spec


@dataclass(frozen=True, kw_only=True)
class ExportOptions:
    max_file_bytes: int = 64 * MIB  # microsoft/fhir-server's rollover size
    commit_every_pages: int = 10  # progress saved every 10 pages, as in microsoft/fhir-server
    parallel_types: int = 4
    failure_threshold: int = 3  # consecutive failed attempts before the job fails
    retry: RetryPolicy = DEFAULT_RETRY

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_file_bytes": self.max_file_bytes,
            "commit_every_pages": self.commit_every_pages,
            "parallel_types": self.parallel_types,
            "failure_threshold": self.failure_threshold,
            "retry": {
                "first_retry_interval_ms": self.retry.first_retry_interval_ms,
                "max_attempts": self.retry.max_attempts,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "options") -> ExportOptions:
        return _read_options(ObjectReader(data, path))


@dataclass(frozen=True, kw_only=True)
class ExportRequest:
    """One export job's parameters as stored in the job record and the orchestration input."""

    source: FhirSourceSpec
    destination: BlobDestinationSpec | PutDestinationSpec
    options: ExportOptions = field(default_factory=ExportOptions)
    requested_by: str
    labels: tuple[tuple[str, str], ...] = ()  # sorted (key, value) pairs: immutable and hashable

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "source": self.source.to_dict(),
            "destination": self.destination.to_dict(),
            "options": self.options.to_dict(),
            "requested_by": self.requested_by,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportRequest:
        request, _ = _read_request(ObjectReader(data, ""), api=False)
        return request


@dataclass(frozen=True)
class SubmittedSecrets:
    """Secret values taken out of an API request; repr never shows them."""

    source_auth: str | None = field(default=None, repr=False)
    destination: str | None = field(default=None, repr=False)


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
    return _read_request(
        ObjectReader(body, ""),
        api=True,
        default_base_url=default_base_url,
        default_container=default_container,
    )


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


# --- readers: one per object, shared by the API and the record shape --------------------------


def _read_request(
    reader: ObjectReader,
    *,
    api: bool,
    default_base_url: str | None = None,
    default_container: str | None = None,
) -> tuple[ExportRequest, SubmittedSecrets]:
    read_schema_version(reader)
    source, auth = _read_source(reader.nested("source"), api=api, default_base_url=default_base_url)
    destination, dest_secret = read_any_destination(
        reader.nested("destination"), api=api, default_container=default_container
    )
    options_reader = reader.nested("options", None)
    options = _read_options(options_reader) if options_reader is not None else ExportOptions()
    requested_by = check_email(reader.field("requested_by"), reader.text("requested_by", max_len=254))
    labels = _read_labels(reader.nested("labels", None))
    reader.finish()
    request = ExportRequest(
        source=source, destination=destination, options=options, requested_by=requested_by, labels=labels
    )
    return request, SubmittedSecrets(source_auth=auth, destination=dest_secret)


def _read_kind(reader: ObjectReader, expected: str) -> None:
    kind = reader.text("kind")
    if kind != expected:
        raise ValidationError(reader.field("kind"), f'must be "{expected}"')


def _read_source(
    reader: ObjectReader, *, api: bool, default_base_url: str | None
) -> tuple[FhirSourceSpec, str | None]:
    _read_kind(reader, "fhir")
    base_url = reader.text("base_url", default_base_url)
    if base_url is None:
        raise ValidationError(reader.field("base_url"), "is required")
    check_http_url(reader.field("base_url"), base_url)
    types = reader.texts("types", max_items=200, max_len=64)
    if not types:
        raise ValidationError(reader.field("types"), "must name at least one resource type")
    for i, name in enumerate(types):
        if not RESOURCE_TYPE.match(name):
            raise ValidationError(f"{reader.field('types')}[{i}]", "must be a FHIR resource type name")
        if name in types[:i]:
            raise ValidationError(f"{reader.field('types')}[{i}]", "is listed twice")
    since = reader.text("since", None, max_len=64)
    if since is not None:
        check_instant(reader.field("since"), since)
    type_filters = reader.texts("type_filters", (), max_items=200)
    for i, given in enumerate(type_filters):
        for query in split_type_filters([given]):  # `A?x=1,A?y=2` is two queries, ORed
            resource_type, sep, params = query.partition("?")
            if not sep or not params or resource_type not in types:
                raise ValidationError(
                    f"{reader.field('type_filters')}[{i}]", "must be `Type?query` for one of source.types"
                )
    type_filters = tuple(split_type_filters(type_filters))
    page_size = reader.integer("page_size", 1000, lo=1, hi=10_000)
    elements = reader.texts("elements", (), max_items=100, max_len=128)
    for i, element in enumerate(elements):
        check_element(element, f"{reader.field('elements')}[{i}]")
    patient_count, patient_search = _read_patients(reader.nested("patients", None), types)
    auth_value: str | None = None
    auth_name: str | None = None
    if api:
        auth_value = reader.text("auth_secret", None, max_len=MAX_SECRET_VALUE_LENGTH)
    else:
        auth_name = reader.text("auth_secret_name", None, max_len=127)
        if auth_name is not None:
            check_secret_name(reader.field("auth_secret_name"), auth_name)
    reader.finish()
    spec = FhirSourceSpec(
        base_url=base_url,
        types=types,
        since=since,
        type_filters=type_filters,
        page_size=page_size,
        auth_secret_name=auth_name,
        elements=elements,
        patient_count=patient_count,
        patient_search=patient_search,
    )
    return spec, auth_value


_SEARCH_PARAM: Final = re.compile(r"^[a-z_][A-Za-z0-9_-]{0,63}$")
MAX_PATIENTS: Final = 1_000_000


def _read_patients(
    reader: ObjectReader | None, types: tuple[str, ...]
) -> tuple[int, tuple[tuple[str, str], ...]]:
    """`{"count": 2000, "search_params": {"Patient": "_id", "Observation": "patient"}}`."""
    if reader is None:
        return 0, ()
    count = reader.integer("count", lo=1, hi=MAX_PATIENTS)
    params_reader = reader.nested("search_params")
    search: list[tuple[str, str]] = []
    for resource_type in types:
        param = params_reader.text(resource_type, max_len=64)
        if not _SEARCH_PARAM.match(param):
            raise ValidationError(params_reader.field(resource_type), "must be a search parameter name")
        search.append((resource_type, param))
    params_reader.finish()
    reader.finish()
    return count, tuple(search)


# Stands for the name a submitted PUT secret will get (`with_secret_names` replaces it before the
# request is stored): a PUT spec with auth must name its secret.
_PENDING_SECRET_NAME: Final = "pending-destination-secret"


def read_any_destination(
    reader: ObjectReader, *, api: bool, default_container: str | None
) -> tuple[BlobDestinationSpec | PutDestinationSpec, str | None]:
    """A Blob or HTTP PUT destination; with `api`, its `secret` value is taken out."""
    if reader.text("kind", "blob", max_len=16) != "http_put":
        return _read_destination(reader, api=api, default_container=default_container)
    # Every key is PutDestinationSpec's to judge (it refuses unknown ones); `_get` marks them read.
    data = {key: reader._get(key) for key in reader.keys()}  # noqa: SIM118 - keys() is the reader's
    if not api:
        return PutDestinationSpec.from_dict(data, reader.path), None
    value = data.pop("secret", None)
    if value is not None and (
        not isinstance(value, str) or not value or len(value) > MAX_SECRET_VALUE_LENGTH
    ):
        raise ValidationError(reader.field("secret"), "must be a non-empty string")
    if "secret_name" in data:
        raise ValidationError(reader.field("secret_name"), "is not accepted; send the value as `secret`")
    auth = data.get("auth", "none")
    if auth != "none" and value is None:
        raise ValidationError(reader.field("secret"), f"is required with auth {auth!r}")
    name = _PENDING_SECRET_NAME if value is not None else None
    return PutDestinationSpec.from_dict({**data, "secret_name": name}, reader.path), value


def _read_destination(
    reader: ObjectReader, *, api: bool, default_container: str | None
) -> tuple[BlobDestinationSpec, str | None]:
    _read_kind(reader, "blob")
    container = reader.text("container", default_container, max_len=63)
    if container is None:
        raise ValidationError(reader.field("container"), "is required")
    check_container_name(reader.field("container"), container)
    prefix = reader.text("path_prefix", "", min_len=0, max_len=512)
    _check_path_prefix(reader.field("path_prefix"), prefix)
    secret_value: str | None = None
    secret_name: str | None = None
    if api:
        secret_value = reader.text("secret", None, max_len=MAX_SECRET_VALUE_LENGTH)
    else:
        secret_name = reader.text("secret_name", None, max_len=127)
        if secret_name is not None:
            check_secret_name(reader.field("secret_name"), secret_name)
    reader.finish()
    spec = BlobDestinationSpec(container=container, path_prefix=prefix, secret_name=secret_name)
    return spec, secret_value


def _check_path_prefix(field_path: str, prefix: str) -> None:
    if not prefix:
        return
    segments = prefix.split("/")
    # Blob names are flat, but "." / ".." / empty segments confuse tools that map them to folders.
    if any(s in ("", ".", "..") for s in segments) or "\\" in prefix:
        raise ValidationError(field_path, "must be folder names separated by single slashes, without . or ..")


def _read_options(reader: ObjectReader) -> ExportOptions:
    defaults = ExportOptions()
    retry_reader = reader.nested("retry", None)
    retry = defaults.retry
    if retry_reader is not None:
        retry = RetryPolicy(
            first_retry_interval_ms=retry_reader.integer(
                "first_retry_interval_ms", DEFAULT_RETRY.first_retry_interval_ms, lo=100, hi=3_600_000
            ),
            max_attempts=retry_reader.integer("max_attempts", DEFAULT_RETRY.max_attempts, lo=1, hi=20),
        )
        retry_reader.finish()
    options = ExportOptions(
        # Upper bound: a file bigger than 16 GiB is unwieldy for every consumer we know of.
        max_file_bytes=reader.integer("max_file_bytes", defaults.max_file_bytes, lo=1024, hi=16 * 1024 * MIB),
        commit_every_pages=reader.integer("commit_every_pages", defaults.commit_every_pages, lo=1, hi=10_000),
        parallel_types=reader.integer("parallel_types", defaults.parallel_types, lo=1, hi=16),
        failure_threshold=reader.integer("failure_threshold", defaults.failure_threshold, lo=1, hi=100),
        retry=retry,
    )
    reader.finish()
    return options


def _read_labels(reader: ObjectReader | None) -> tuple[tuple[str, str], ...]:
    if reader is None:
        return ()
    keys = reader.keys()
    if len(keys) > _MAX_LABELS:
        raise ValidationError(reader.path, f"must have at most {_MAX_LABELS} entries")
    pairs = []
    for key in keys:
        if not _LABEL_KEY.match(key):
            raise ValidationError(reader.field(key), "label names are 1..63 letters, digits, _ . or -")
        pairs.append((key, reader.text(key, max_len=256)))
    reader.finish()
    return tuple(sorted(pairs))


# --- activity inputs: one dataclass in per activity ---------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PageTask:
    """Read page `page` of `type` at `cursor` (None: the first page of search `query`) and stage
    it as a block of file `file_sequence`. The block id derives from (type, file_sequence, page),
    so a retried task replaces its block."""

    job_id: str
    request: ExportRequest
    type: str
    cursor: str | None
    page: int
    file_sequence: int
    query: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "type": self.type,
            "cursor": self.cursor,
            "page": self.page,
            "file_sequence": self.file_sequence,
            "query": self.query,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageTask:
        r = ObjectReader(data, "")
        read_schema_version(r)
        request, _ = _read_request(r.nested("request"), api=False)
        task = cls(
            job_id=r.text("job_id", max_len=256),
            request=request,
            type=r.text("type", max_len=64),
            cursor=r.text("cursor", None, max_len=16_384),
            page=r.integer("page", lo=0, hi=2**53),
            file_sequence=r.integer("file_sequence", lo=1, hi=2**53),
            query=r.integer("query", 0, lo=0, hi=2**53),
        )
        r.finish()
        return task


@dataclass(frozen=True, kw_only=True)
class CommitTask:
    """Commit `file.blocks` (the whole list, in order) as the content of `file.name`."""

    job_id: str
    request: ExportRequest
    file: FileState

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "file": self.file.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommitTask:
        r = ObjectReader(data, "")
        read_schema_version(r)
        request, _ = _read_request(r.nested("request"), api=False)
        task = cls(
            job_id=r.text("job_id", max_len=256),
            request=request,
            file=FileState.from_reader(r.nested("file")),
        )
        r.finish()
        return task
