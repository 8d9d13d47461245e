"""Sources of FHIR data for the export: the `Source` protocol, `FhirSource`, and `make_source`.

base.py      Page, Source (protocol), SourceSpec (what make_source reads)
fhir.py      FhirSource: FHIR search paging with next-link cursors
factory.py   make_source(spec, http_client, secret_value), shared_http_client()
_query.py    the first search URL per type (since, _typeFilter, _count), validated
_bundle.py   searchset Bundle -> NDJSON + next link, malformed pages -> SourceDataError
_http.py     HTTP status / transport error -> shared.errors classification

`classify_status`, `classify_transport_error`, `redact_url` and `parse_type_filters` are public
here for other FHIR readers (the Bulk Data front door, `shared.bulkdata`); import them from this
package, not from the private modules.
"""

from __future__ import annotations

from shared.sources._http import classify_status, classify_transport_error, redact_url
from shared.sources._query import parse_type_filters
from shared.sources.base import Page, Source, SourceSpec
from shared.sources.factory import make_source, shared_http_client
from shared.sources.fhir import FhirSource

__all__ = [
    "FhirSource",
    "Page",
    "Source",
    "SourceSpec",
    "classify_status",
    "classify_transport_error",
    "make_source",
    "parse_type_filters",
    "redact_url",
    "shared_http_client",
]
