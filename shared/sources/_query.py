"""Build the search URLs of each resource type from the export request (pure, no I/O).

A type's export is an ordered list of searches (`Searches`), each paged on its own:

    one search per `_typeFilter` of the type (the Bulk Data IG ORs them; none: one unfiltered)
  x one search per chunk of the patient list, when the export is restricted to patients
    (`patient=a,b,c` or `_id=a,b,c`, each chunk's ids within `MEMBER_CHUNK_CHARS`)

in chunk-major order: query `q` is chunk `q // F` with filter `q % F` (F filters). The Bulk Data
`_since` becomes `_lastUpdated=gt<instant>`, `page_size` becomes `_count`, and `_elements` goes
to every search of the types it names. Everything is validated once, at construction, so a bad
request fails fast as a `ValidationError` naming the field instead of a 400 mid-export.

Only searches of different filters over the same chunk can find the same resource: chunks are
disjoint sets of patients and each patient search parameter used is a single reference.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final
from urllib.parse import parse_qsl, urlsplit

import httpx

from shared._strict import RESOURCE_TYPE
from shared.errors import ValidationError
from shared.sources.base import Searches

__all__ = [
    "MEMBER_CHUNK_CHARS",
    "FhirQuery",
    "check_element",
    "elements_for",
    "member_chunks",
    "parse_type_filters",
    "split_type_filters",
    "validate_resource_type",
]

Params = tuple[tuple[str, str], ...]

# Parameters the source owns: a filter setting them would silently change paging or content.
_RESERVED_FILTER_PARAMS = frozenset({"_count", "_type", "_sort", "_include", "_revinclude", "_elements"})
MAX_PAGE_SIZE = 10_000
# The patient ids of one search, URL-encoded (`a%2Cb`): about 180 ids like `patient-00000042`.
# With the other parameters the first URL stays well under 8 KB, the request-line limit of
# common servers and proxies (Tomcat, nginx, Kestrel); next links repeat the same parameters.
MEMBER_CHUNK_CHARS: Final = 3500
_SEPARATOR_CHARS: Final = 3  # "," is sent as %2C
_FHIR_ID: Final = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
# `_elements` entries as the IG writes them: `name` (every type) or `Patient.name` (one type).
_ELEMENT: Final = re.compile(r"^(?:(?P<type>[A-Z][A-Za-z]{1,63})\.)?(?P<name>[a-z][A-Za-z0-9]{0,63})$")
# A comma starts a new query only where a resource type and `?` follow it; other commas are
# part of a value (`gender=male,female` is FHIR's own OR of values).
_QUERY_START: Final = re.compile(r",(?=[A-Z][A-Za-z]{1,63}\?)")


def validate_resource_type(value: str, field_name: str = "types") -> str:
    if not RESOURCE_TYPE.match(value):
        raise ValidationError(field_name, f"{value!r} is not a FHIR resource type name")
    return value


def _validate_since(since: str | None) -> str | None:
    if since is None:
        return None
    try:
        parsed = datetime.fromisoformat(since.replace("Z", "+00:00"))
    except ValueError:
        raise ValidationError("since", f"{since!r} is not an ISO 8601 instant") from None
    # A FHIR instant always carries a zone; without one the server would guess (and servers differ).
    if parsed.tzinfo is None:
        raise ValidationError("since", f"{since!r} has no time zone (use Z or +hh:mm)")
    return since


def split_type_filters(values: Sequence[str]) -> list[str]:
    """`["Patient?gender=male,Patient?gender=female"]` -> one entry per query, repeats dropped."""
    queries: list[str] = []
    for value in values:
        for query in _QUERY_START.split(value):
            if query not in queries:
                queries.append(query)
    return queries


def parse_type_filters(filters: Sequence[str], types: Sequence[str]) -> dict[str, tuple[Params, ...]]:
    """`["Observation?status=final&category=laboratory", "Observation?code=x"]` ->
    `{"Observation": ((("status", "final"), ("category", "laboratory")), (("code", "x"),))}`.

    Parameters inside one filter are ANDed (one search); several filters of one type, repeated
    or comma-separated, are ORed (one search each, the results de-duplicated by the export).
    """
    parsed: dict[str, list[Params]] = {}
    for raw in split_type_filters(filters):
        resource_type, sep, query = raw.partition("?")
        validate_resource_type(resource_type, "type_filters")
        if not sep or not query:
            raise ValidationError(
                "type_filters", f"{raw!r} has no search parameters (expected Type?param=value)"
            )
        if types and resource_type not in types:
            raise ValidationError("type_filters", f"{raw!r} filters {resource_type}, which is not exported")
        try:
            params = tuple(parse_qsl(query, keep_blank_values=True, strict_parsing=True))
        except ValueError:
            raise ValidationError("type_filters", f"{raw!r} is not a valid query string") from None
        reserved = sorted({name for name, _ in params} & _RESERVED_FILTER_PARAMS)
        if reserved:
            raise ValidationError(
                "type_filters", f"{raw!r} sets {', '.join(reserved)}, which the export controls"
            )
        if params not in parsed.setdefault(resource_type, []):
            parsed[resource_type].append(params)
    return {t: tuple(queries) for t, queries in parsed.items()}


def check_element(value: str, field_name: str = "elements") -> str:
    if not _ELEMENT.match(value):
        raise ValidationError(field_name, f"{value!r} is not an element name (`name` or `Patient.name`)")
    return value


def elements_for(elements: Sequence[str], resource_type: str) -> tuple[str, ...]:
    """The `_elements` of one type's searches: unprefixed entries apply to every type, prefixed
    ones (`Patient.name`) to theirs only. () means whole resources."""
    names: list[str] = []
    for value in elements:
        match = _ELEMENT.match(value)
        if match and match["type"] in (None, resource_type) and match["name"] not in names:
            names.append(match["name"])
    return tuple(names)


def member_chunks(ids: Sequence[str], max_chars: int = MEMBER_CHUNK_CHARS) -> tuple[str, ...]:
    """The ids in order, packed greedily into comma-joined chunks of at most `max_chars` sent
    characters each. Deterministic: every process cuts the same list into the same chunks."""
    chunks: list[str] = []
    current: list[str] = []
    size = 0
    for patient_id in ids:
        extra = len(patient_id) + (_SEPARATOR_CHARS if current else 0)
        if current and size + extra > max_chars:
            chunks.append(",".join(current))
            current, size, extra = [], 0, len(patient_id)
        current.append(patient_id)
        size += extra
    if current:
        chunks.append(",".join(current))
    return tuple(chunks)


@dataclass(frozen=True)
class FhirQuery:
    """A validated export request for one FHIR server; `first_url(type, query)` is the first
    page of one of the type's searches (`searches(type)`)."""

    base_url: str
    types: tuple[str, ...] = ()
    since: str | None = None
    page_size: int = 1000
    filters: Mapping[str, tuple[Params, ...]] = field(default_factory=dict)
    elements: tuple[str, ...] = ()
    patient_params: Mapping[str, str] = field(default_factory=dict)  # type -> patient search param
    chunks: tuple[str, ...] = ()  # comma-joined patient ids per search; () when not restricted

    @classmethod
    def build(
        cls,
        base_url: str,
        types: Sequence[str] = (),
        since: str | None = None,
        type_filters: Sequence[str] = (),
        page_size: int = 1000,
        *,
        elements: Sequence[str] = (),
        patient_params: Mapping[str, str] | None = None,
        patients: Sequence[str] | None = None,
    ) -> FhirQuery:
        """`patient_params` and `patients` go together: the export is restricted to `patients`,
        each type searched by its parameter. An empty list is refused (it must never mean all)."""
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError("base_url", "must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValidationError("base_url", "must not carry a query or fragment")
        for resource_type in types:
            validate_resource_type(resource_type)
        if isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValidationError("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {page_size!r}")
        for value in elements:
            check_element(value)
        params = dict(patient_params or {})
        chunks: tuple[str, ...] = ()
        if params or patients is not None:
            if not patients:
                raise ValidationError("patients", "the export is restricted to patients, but none are listed")
            for patient_id in patients:
                if not _FHIR_ID.match(patient_id):
                    raise ValidationError("patients", f"{patient_id[:80]!r} is not a FHIR id")
            missing = [t for t in types if t not in params]
            if missing or not params:
                raise ValidationError("patients", f"no patient search parameter for {', '.join(missing)}")
            chunks = member_chunks(patients)
        return cls(
            base_url=base_url.rstrip("/"),
            types=tuple(types),
            since=_validate_since(since),
            page_size=page_size,
            filters=parse_type_filters(type_filters, types),
            elements=tuple(elements),
            patient_params=params,
            chunks=chunks,
        )

    def searches(self, resource_type: str) -> Searches:
        filters = max(1, len(self.filters.get(resource_type, ())))
        return Searches(count=filters * max(1, len(self.chunks)), overlap=filters)

    def elements_of(self, resource_type: str) -> tuple[str, ...]:
        return elements_for(self.elements, resource_type)

    def first_url(self, resource_type: str, query: int = 0) -> str:
        validate_resource_type(resource_type, "resource_type")
        if self.types and resource_type not in self.types:
            raise ValidationError("resource_type", f"{resource_type} is not one of the exported types")
        searches = self.searches(resource_type)
        if not 0 <= query < searches.count:
            raise ValidationError("query", f"{resource_type} has {searches.count} searches, not {query + 1}")
        params: list[tuple[str, str]] = [("_count", str(self.page_size))]
        if self.since is not None:
            # `_since` means "changed after": strictly greater than, per the Bulk Data IG.
            params.append(("_lastUpdated", f"gt{self.since}"))
        filters = self.filters.get(resource_type, ())
        if filters:
            params.extend(filters[query % searches.overlap])
        elements = self.elements_of(resource_type)
        if elements:
            params.append(("_elements", ",".join(elements)))
        if self.chunks:
            params.append((self.patient_params[resource_type], self.chunks[query // searches.overlap]))
        return str(httpx.URL(f"{self.base_url}/{resource_type}", params=params))

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/metadata"
