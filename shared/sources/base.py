"""What every source of FHIR data offers the export: one page at a time, and a cheap liveness check.

A source pages through one resource type with an opaque, plain-string cursor that the caller keeps
in its checkpoint (durable history), so a crashed or `continue_as_new`-ed export resumes exactly
where it stopped. Nothing here does I/O; implementations live one per module (`fhir.py`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Page", "Source", "SourceSpec"]


@dataclass(frozen=True)
class Page:
    """One page of search results, already in the shape the destination writes.

    `ndjson` holds `count` resources, one compact JSON object per line, each line terminated by
    `\\n`, so pages can be appended to a file as they are. `next_cursor` is None on the last page;
    otherwise pass it back to `Source.fetch_page` (it is safe to store: it carries no secrets
    that were not already in the server's own `next` link).
    """

    resource_type: str
    ndjson: bytes
    count: int
    next_cursor: str | None
    # The URL this page was read from (credentials removed), for logs and error messages.
    url: str = ""

    @property
    def is_last(self) -> bool:
        return self.next_cursor is None

    @property
    def size_bytes(self) -> int:
        return len(self.ndjson)


@runtime_checkable
class Source(Protocol):
    """A pageable source of resources, one resource type at a time.

    Errors follow `shared.errors`: `TransientError` (incl. `RetryAfterError`) when a retry may
    help, `PermanentError` when it cannot, `SourceDataError` when a page is malformed.
    """

    def check_connection(self) -> None:
        """Cheap round trip proving the source is reachable and accepts our credentials."""
        ...

    def fetch_page(self, resource_type: str, cursor: str | None) -> Page:
        """The first page of `resource_type` when `cursor` is None, else the page `cursor` names."""
        ...


class SourceSpec(Protocol):
    """The attributes `make_source` reads; `shared.contracts.FhirSourceSpec` provides them.

    Declared as read-only properties so a frozen dataclass satisfies the protocol.
    """

    @property
    def kind(self) -> str: ...

    @property
    def base_url(self) -> str: ...

    @property
    def types(self) -> Sequence[str]: ...

    @property
    def since(self) -> str | None: ...

    @property
    def type_filters(self) -> Sequence[str]: ...

    @property
    def page_size(self) -> int: ...
