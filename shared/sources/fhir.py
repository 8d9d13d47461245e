"""`FhirSource`: page through a FHIR R4 server's search API, one resource type at a time.

The cursor is the server's absolute `Bundle.link[next]` URL, so resuming needs no server-side
state of ours; a type's several searches (`FhirQuery.searches`) are told apart by the caller's
`query` index, needed only for a first page. The process-wide `httpx.Client` is passed in (built once, see `factory`), and the
bearer token is passed in already resolved; it is sent only to the server's own origin and never
appears in messages or logs. At most one page is held in memory, bounded by `max_page_bytes`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from shared.errors import PermanentError, SourceDataError, TransientError
from shared.outbound import OutboundRefused
from shared.sources._bundle import parse_searchset
from shared.sources._http import DEFAULT_RETRY_AFTER_S, classify_status, classify_transport_error, redact_url
from shared.sources._query import FhirQuery, validate_resource_type
from shared.sources.base import Page, Searches

__all__ = ["DEFAULT_MAX_PAGE_BYTES", "FhirSource"]

log = logging.getLogger(__name__)

DEFAULT_MAX_PAGE_BYTES = 256 * 1024 * 1024
# Error bodies are read only to quote an OperationOutcome; a proxy's huge HTML page is cut here.
_MAX_ERROR_BODY_BYTES = 64 * 1024
_MAX_METADATA_BYTES = 16 * 1024 * 1024
_ACCEPT = "application/fhir+json, application/json;q=0.9"


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port or default_port


class FhirSource:
    """A `Source` over FHIR search: `GET [base]/[type]?_count=..&_lastUpdated=gt..`, then `next`."""

    def __init__(
        self,
        http_client: httpx.Client,
        base_url: str,
        *,
        types: Sequence[str] = (),
        since: str | None = None,
        type_filters: Sequence[str] = (),
        page_size: int = 1000,
        elements: Sequence[str] = (),
        patient_params: Mapping[str, str] | None = None,
        patients: Sequence[str] | None = None,
        bearer_token: str | None = None,
        default_retry_after_s: float = DEFAULT_RETRY_AFTER_S,
        max_page_bytes: int = DEFAULT_MAX_PAGE_BYTES,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        self._client = http_client
        self.query = FhirQuery.build(
            base_url,
            types,
            since,
            type_filters,
            page_size,
            elements=elements,
            patient_params=patient_params,
            patients=patients,
        )
        self._origin = _origin(httpx.URL(self.query.base_url))
        self._token = bearer_token or None
        self._default_retry_after_s = default_retry_after_s
        self._max_page_bytes = max_page_bytes
        self._now = now

    def __repr__(self) -> str:  # never shows the token
        return f"FhirSource({redact_url(self.query.base_url)!r}, types={list(self.query.types)!r})"

    def check_connection(self) -> None:
        """The source answers: its CapabilityStatement, or else one resource of a search.

        Many servers answer searches well but serve no `/metadata` (a 404, an HTML page, a FHIR
        facade); such a source must not fail every export, so a one-resource search of the first
        type decides instead, with a warning. A transient failure of `/metadata` (5xx, timeout,
        429) is raised as it is: the retry policy runs the check again.
        """
        url = self.query.metadata_url
        what = f"metadata {redact_url(url)}"
        try:
            body = self._get(url, what, _MAX_METADATA_BYTES)
            if _is_capability_statement(body):
                return
            # A 200 that is not FHIR: a login page, a proxy, or a server without /metadata.
            problem: PermanentError = SourceDataError(f"{what}: response is not a CapabilityStatement")
        except (TransientError, OutboundRefused):
            raise
        except PermanentError as exc:
            problem = exc
        if not self.query.types:
            raise problem
        resource_type = self.query.types[0]
        probe = str(httpx.URL(self.query.first_url(resource_type)).copy_set_param("_count", "1"))
        shown = redact_url(probe)
        try:
            parse_searchset(self._get(probe, f"search {shown}", self._max_page_bytes), resource_type, shown)
        except PermanentError as exc:
            raise PermanentError(f"{problem}; and a search failed too: {exc}") from exc
        log.warning(
            "source %s: %s; a %s search works, so the export goes on",
            redact_url(self.query.base_url),
            problem,
            resource_type,
        )

    def searches(self, resource_type: str) -> Searches:
        return self.query.searches(resource_type)

    def fetch_page(self, resource_type: str, cursor: str | None, *, query: int = 0) -> Page:
        validate_resource_type(resource_type, "resource_type")
        url = self.query.first_url(resource_type, query) if cursor is None else cursor
        shown = redact_url(url)
        if not self._same_origin(url):
            # A cursor comes from our own checkpoint, seeded by the server's next link; a foreign
            # origin means a corrupted checkpoint or a hostile server, and would leak the token.
            raise PermanentError(f"{resource_type} page {shown}: cursor is not on the source's origin")
        body = self._get(url, f"{resource_type} page {shown}", self._max_page_bytes)
        subsetted = bool(self.query.elements_of(resource_type))
        parsed = parse_searchset(body, resource_type, shown, subsetted=subsetted)
        next_url = parsed.next_url
        if next_url is not None:
            if not self._same_origin(next_url):
                raise SourceDataError(f"{resource_type} page {shown}: next link leaves the source's origin")
            if next_url == url:
                raise SourceDataError(f"{resource_type} page {shown}: next link points to the same page")
        log.debug(
            "%s page %s: %d resources, %d bytes", resource_type, shown, parsed.count, len(parsed.ndjson)
        )
        return Page(resource_type, parsed.ndjson, parsed.count, next_url, url=shown, ids=parsed.ids)

    # -- transport -------------------------------------------------------------------------------

    def _same_origin(self, url: str) -> bool:
        try:
            return _origin(httpx.URL(url)) == self._origin
        except httpx.InvalidURL:
            return False

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": _ACCEPT}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def _get(self, url: str, what: str, limit: int) -> bytes:
        """GET `url` and return its body, or raise the classified error. Streams to enforce `limit`."""
        try:
            with self._client.stream("GET", url, headers=self._headers()) as response:
                if not response.is_success:
                    error_body = _read_at_most(response, _MAX_ERROR_BODY_BYTES)[0]
                    raise classify_status(
                        response,
                        error_body,
                        what,
                        now=self._now,
                        default_retry_after_s=self._default_retry_after_s,
                        secret=self._token,
                    )
                body, complete = _read_at_most(response, limit)
        except httpx.RequestError as exc:
            raise classify_transport_error(exc, what) from exc
        if not complete:
            raise SourceDataError(f"{what}: page is larger than {limit} bytes; lower page_size")
        return body


def _is_capability_statement(body: bytes) -> bool:
    try:
        document: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(document, dict) and document.get("resourceType") == "CapabilityStatement"


def _read_at_most(response: httpx.Response, limit: int) -> tuple[bytes, bool]:
    """Up to `limit` bytes of the body, and whether that was all of it."""
    chunks: list[bytes] = []
    size = 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            chunks.append(chunk[: limit - (size - len(chunk))])
            return b"".join(chunks), False
        chunks.append(chunk)
    return b"".join(chunks), True
