"""Sources of FHIR data for the export: the `Source` protocol, `FhirSource`, and `make_source`.

base.py      Page, Source (protocol), SourceSpec (what make_source reads)
fhir.py      FhirSource: FHIR search paging with next-link cursors
factory.py   make_source(spec, http_client, secret_value), make_http_client(policy)
cursor_seal.py  CursorSeal: a next link with a credential in it is stored encrypted
_query.py    the searches per type (since, ORed _typeFilters, patient chunks, _elements, _count)
_bundle.py   searchset Bundle -> NDJSON + next link, malformed pages -> SourceDataError
_http.py     HTTP status / transport error -> shared.errors classification

`classify_status`, `classify_transport_error`, `redact_url` and the query helpers are public
here for other FHIR readers (the Bulk Data front door, `shared.bulkdata`); import them from this
package, not from the private modules.
"""

from __future__ import annotations

from shared.sources._http import classify_status, classify_transport_error, redact_url
from shared.sources._query import (
    check_element,
    elements_for,
    member_chunks,
    parse_type_filters,
    split_type_filters,
)
from shared.sources.base import Page, Searches, Source, SourceSpec
from shared.sources.cursor_seal import CursorSeal
from shared.sources.factory import make_http_client, make_source
from shared.sources.fhir import FhirSource

__all__ = [
    "CursorSeal",
    "FhirSource",
    "Page",
    "Searches",
    "Source",
    "SourceSpec",
    "check_element",
    "classify_status",
    "classify_transport_error",
    "elements_for",
    "make_source",
    "member_chunks",
    "parse_type_filters",
    "redact_url",
    "make_http_client",
    "split_type_filters",
]
