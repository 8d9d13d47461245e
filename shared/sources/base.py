"""What every source of FHIR data offers the export: one page at a time, and a cheap liveness check.

A source pages through one resource type with an opaque, plain-string cursor that the caller keeps
in its checkpoint (durable history), so a crashed or `continue_as_new`-ed export resumes exactly
where it stopped; a type may take several searches (`Searches`), and the checkpoint keeps which. Nothing here does I/O; implementations live one per module (`fhir.py`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = ["Page", "Searches", "Source", "SourceSpec"]


@dataclass(frozen=True)
class Page:
    """One page of search results, already in the shape the destination writes.

    `ndjson` holds `count` resources, one compact JSON object per line, each line terminated by
    `\\n`, so pages can be appended to a file as they are. `next_cursor` is None on the last page;
    otherwise pass it back to `Source.fetch_page`. It is the server's `next` link, which may carry a
    token: whoever stores it seals it first (`shared.sources.cursor_seal`).
    """

    resource_type: str
    ndjson: bytes
    count: int
    next_cursor: str | None
    # The URL this page was read from (credentials removed), for logs and error messages.
    url: str = ""
    # The id of each line, in order (empty when the source does not say; then `without` parses).
    ids: tuple[str, ...] = ()

    @property
    def is_last(self) -> bool:
        return self.next_cursor is None

    @property
    def size_bytes(self) -> int:
        return len(self.ndjson)

    def line_ids(self) -> tuple[str, ...]:
        if self.ids or not self.count:
            return self.ids
        return tuple(str(json.loads(line)["id"]) for line in self.ndjson.splitlines())

    def without(self, seen: Collection[str]) -> Page:
        """This page without the resources whose ids are in `seen` (found by an earlier search)."""
        ids = self.line_ids()
        if not seen or not any(i in seen for i in ids):
            return self
        kept = [(line, i) for line, i in zip(self.ndjson.splitlines(), ids, strict=True) if i not in seen]
        body = b"".join(line + b"\n" for line, _ in kept)
        ids = tuple(i for _, i in kept)
        return Page(self.resource_type, body, len(kept), self.next_cursor, self.url, ids)


@dataclass(frozen=True)
class Searches:
    """How one type's export splits into searches, run one after another (query 0, 1, ...).

    Consecutive runs of `overlap` searches may find the same resource (the ORed filters of one
    patient chunk); searches of different runs never do. So a search's results are checked only
    against the ids kept by the earlier searches of its run, and only when `overlap > 1`.
    """

    count: int = 1
    overlap: int = 1

    def next_query(self, query: int) -> int | None:
        return query + 1 if query + 1 < self.count else None

    def earlier_in_run(self, query: int) -> range:
        """The searches whose kept ids `query`'s results must not repeat (empty: no check)."""
        return range(query - query % self.overlap, query)

    def feeds_later(self, query: int) -> bool:
        """Whether later searches need the ids `query` keeps."""
        return query % self.overlap < self.overlap - 1 and query + 1 < self.count


@runtime_checkable
class Source(Protocol):
    """A pageable source of resources, one resource type at a time.

    Errors follow `shared.errors`: `TransientError` (incl. `RetryAfterError`) when a retry may
    help, `PermanentError` when it cannot, `SourceDataError` when a page is malformed.
    """

    def check_connection(self) -> None:
        """Cheap round trip proving the source is reachable and accepts our credentials."""
        ...

    def fetch_page(self, resource_type: str, cursor: str | None, *, query: int = 0) -> Page:
        """The first page of search `query` of `resource_type` when `cursor` is None, else the
        page `cursor` names (a cursor belongs to the search that returned it)."""
        ...

    def searches(self, resource_type: str) -> Searches:
        """How many searches the type's export takes, and which may overlap."""
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

    @property
    def elements(self) -> Sequence[str]: ...

    @property
    def patient_params(self) -> Mapping[str, str]:
        """Type -> the search parameter restricting it to patients; empty: not restricted."""
        ...
