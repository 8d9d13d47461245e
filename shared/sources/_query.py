"""Build the first search URL of each resource type from the export request (pure, no I/O).

The Bulk Data `_since` becomes `_lastUpdated=gt<instant>` ("changed after"), `page_size` becomes
`_count`, and a `_typeFilter` entry such as `Observation?status=final` contributes its query
parameters to that type's search. Everything is validated once, at construction, so a bad request
fails fast as a `ValidationError` naming the field instead of as a 400 from the server mid-export.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import parse_qsl, urlsplit

import httpx

from shared._strict import RESOURCE_TYPE
from shared.errors import ValidationError

__all__ = ["FhirQuery", "parse_type_filters", "validate_resource_type"]

# Parameters the source owns: a filter setting them would silently change paging.
_RESERVED_FILTER_PARAMS = frozenset({"_count", "_type", "_sort", "_include", "_revinclude", "_elements"})
MAX_PAGE_SIZE = 10_000


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


def parse_type_filters(
    filters: Sequence[str], types: Sequence[str]
) -> dict[str, tuple[tuple[str, str], ...]]:
    """`["Observation?status=final&category=laboratory"]` -> `{"Observation": (("status", "final"), ...)}`.

    Several parameters inside one filter are ANDed, which a single search expresses. The Bulk Data
    IG ORs *several filters* for one type, which would need one search per filter and de-duplication
    across them; that is not supported, so it is refused rather than silently ANDed.
    """
    parsed: dict[str, tuple[tuple[str, str], ...]] = {}
    for raw in filters:
        resource_type, sep, query = raw.partition("?")
        validate_resource_type(resource_type, "type_filters")
        if not sep or not query:
            raise ValidationError(
                "type_filters", f"{raw!r} has no search parameters (expected Type?param=value)"
            )
        if types and resource_type not in types:
            raise ValidationError("type_filters", f"{raw!r} filters {resource_type}, which is not exported")
        if resource_type in parsed:
            raise ValidationError(
                "type_filters", f"more than one filter for {resource_type} (OR of filters is not supported)"
            )
        try:
            params = parse_qsl(query, keep_blank_values=True, strict_parsing=True)
        except ValueError:
            raise ValidationError("type_filters", f"{raw!r} is not a valid query string") from None
        reserved = sorted({name for name, _ in params} & _RESERVED_FILTER_PARAMS)
        if reserved:
            raise ValidationError(
                "type_filters", f"{raw!r} sets {', '.join(reserved)}, which the export controls"
            )
        parsed[resource_type] = tuple(params)
    return parsed


@dataclass(frozen=True)
class FhirQuery:
    """A validated export request for one FHIR server; `first_url(type)` is each type's page 1."""

    base_url: str
    types: tuple[str, ...] = ()
    since: str | None = None
    page_size: int = 1000
    filters: Mapping[str, tuple[tuple[str, str], ...]] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        base_url: str,
        types: Sequence[str] = (),
        since: str | None = None,
        type_filters: Sequence[str] = (),
        page_size: int = 1000,
    ) -> FhirQuery:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValidationError("base_url", "must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValidationError("base_url", "must not carry a query or fragment")
        for resource_type in types:
            validate_resource_type(resource_type)
        if isinstance(page_size, bool) or not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValidationError("page_size", f"must be between 1 and {MAX_PAGE_SIZE}, got {page_size!r}")
        return cls(
            base_url=base_url.rstrip("/"),
            types=tuple(types),
            since=_validate_since(since),
            page_size=page_size,
            filters=parse_type_filters(type_filters, types),
        )

    def first_url(self, resource_type: str) -> str:
        validate_resource_type(resource_type, "resource_type")
        if self.types and resource_type not in self.types:
            raise ValidationError("resource_type", f"{resource_type} is not one of the exported types")
        params: list[tuple[str, str]] = [("_count", str(self.page_size))]
        if self.since is not None:
            # `_since` means "changed after": strictly greater than, per the Bulk Data IG.
            params.append(("_lastUpdated", f"gt{self.since}"))
        params.extend(self.filters.get(resource_type, ()))
        return str(httpx.URL(f"{self.base_url}/{resource_type}", params=params))

    @property
    def metadata_url(self) -> str:
        return f"{self.base_url}/metadata"
