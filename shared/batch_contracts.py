"""The contracts of a batch (seed 001: files picked by a user, sent to a server as one job).

    POST /api/batches
    {"source": {"kind": "blob", "container": "acquired", "secret": "<connection string or SAS URL>"}
             | {"kind": "url", "secret": "<bearer token>"} | {"kind": "local"},
     "items": ["session-1/img-001.dcm", ...],            1..10,000 names (blob paths, URLs, paths)
     "destination": {"kind": "blob", "container": ..., "path_prefix": ..., "secret": ...}
                  | {"kind": "http_put", "base_url": ..., "url_template": "{base}/{path}", "auth": ...,
                     "secret": ..., "create_parents": true},
     "options": {"concurrency": 4, "retry": {"first_retry_interval_ms": 5000, "max_attempts": 5},
                 "failure_threshold": null, "partial_failure": "fail"},
     "requested_by": "tech@example.com", "labels": {"project": "p1"}}

Secret values are taken out at parsing (`SubmittedSecrets`) and replaced by fresh per-job names;
the items are kept in the job record, not in the request, so orchestration history stays small.
Errors are `ValidationError`s naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Final, Literal

from pydantic import Field, field_validator, model_validator

from shared._strict import Contract, Items, fail, replace, validate
from shared.contracts import BlobDestinationSpec, Destination, Email, Labels, Retry, SecretName
from shared.destinations.http_put import PutDestinationSpec
from shared.retry import DEFAULT as DEFAULT_RETRY
from shared.secrets.base import MAX_SECRET_VALUE_LENGTH, ROLE_DESTINATION, new_secret_name

__all__ = [
    "MAX_ITEMS",
    "BatchOptions",
    "BatchRequest",
    "BatchSourceSpec",
    "DestinationSpec",
    "parse_batch_request",
]

MAX_ITEMS: Final = 10_000
ROLE_SOURCE: Final = "source"
SourceKind = Literal["blob", "url", "local"]
DestinationSpec = BlobDestinationSpec | PutDestinationSpec
Container = Annotated[str, Field(min_length=1, max_length=63)]


class BatchSourceSpec(Contract):
    kind: SourceKind
    container: Container | None = None  # blob sources
    secret_name: SecretName | None = None  # blob: connection string or SAS URL; url: bearer token

    @model_validator(mode="after")
    def _container_for_blob(self) -> BatchSourceSpec:
        if self.kind == "blob" and self.container is None:
            fail("is required for a blob source", "container")
        if self.kind != "blob" and self.container is not None:
            fail("unknown field", "container")
        return self


class _ApiSource(Contract):
    """The API shape of the source: a secret VALUE instead of a name (taken out, never kept)."""

    kind: SourceKind
    container: Container | None = None
    secret: Annotated[
        Annotated[str, Field(min_length=1, max_length=MAX_SECRET_VALUE_LENGTH)] | None, Field(repr=False)
    ] = None

    @model_validator(mode="after")
    def _fits_the_kind(self) -> _ApiSource:
        if self.kind == "blob" and self.container is None:
            fail("is required for a blob source", "container")
        if self.kind != "blob" and self.container is not None:
            fail("unknown field", "container")
        if self.kind == "local" and self.secret is not None:
            fail("unknown field", "secret")
        return self


class BatchOptions(Contract):
    concurrency: Annotated[int, Field(ge=1, le=32)] = 4  # items moving at once
    retry: Retry = DEFAULT_RETRY  # attempts per item, and the first wait between them
    # failed items after which no new item starts
    failure_threshold: Annotated[int, Field(ge=1, le=MAX_ITEMS)] | None = None
    partial_failure: Literal["fail", "succeed"] = "fail"  # the batch's state when some items failed
    # Another unfinished job may write under the same destination prefix (shared.destination_claims).
    share_destination: bool = False

    _path: ClassVar[str] = "options"


class BatchRequest(Contract):
    """A batch as stored in its record and passed to its orchestration (without its items)."""

    source: BatchSourceSpec
    destination: Destination
    options: BatchOptions = BatchOptions()
    item_count: Annotated[int, Field(ge=1, le=MAX_ITEMS)]
    requested_by: Email
    labels: Labels = ()

    def secret_names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.source.secret_name, self.destination.secret_name) if n)


class _BatchBody(Contract):
    """The POST body: the request's parts in the API shape, and the items."""

    source: _ApiSource
    items: Annotated[Items[Annotated[str, Field(min_length=1, max_length=1024)]], Field(max_length=MAX_ITEMS)]
    destination: Destination
    options: BatchOptions = BatchOptions()
    requested_by: Email
    labels: Labels = ()

    @field_validator("items")
    @classmethod
    def _once_each(cls, items: tuple[str, ...]) -> tuple[str, ...]:
        if not items:
            fail("must name at least one item")
        first: dict[str, int] = {}
        for i, item in enumerate(items):
            if first.setdefault(item, i) != i:
                fail(f"is listed twice (also items[{first[item]}])", i)
        return items


def parse_batch_request(
    body: Mapping[str, Any], *, job_id: str, default_container: str
) -> tuple[BatchRequest, tuple[str, ...], dict[str, str]]:
    """The request, its items, and the secrets to store ({secret name: value}) of a POST body."""
    context: dict[str, Any] = {"api": True, "secrets": {}, "default_container": default_container}
    parsed = validate(_BatchBody, body, "", context)
    secrets: dict[str, str] = {}
    source_name = None
    if parsed.source.secret is not None:
        source_name = new_secret_name(job_id, ROLE_SOURCE)
        secrets[source_name] = parsed.source.secret
    destination = parsed.destination
    value = context["secrets"].get("destination")
    if value is not None:
        name = new_secret_name(job_id, ROLE_DESTINATION)
        secrets[name] = value
        destination = replace(destination, secret_name=name)
    source = BatchSourceSpec(
        kind=parsed.source.kind, container=parsed.source.container, secret_name=source_name
    )
    request = BatchRequest(
        source=source,
        destination=destination,
        options=parsed.options,
        item_count=len(parsed.items),
        requested_by=parsed.requested_by,
        labels=parsed.labels,
    )
    return request, parsed.items, secrets


def item_values(item: str, index: int, source_kind: str) -> dict[str, str]:
    """The values an item offers to a PUT URL template: `path` (its relative path), `name`
    (its last segment) and `index`; a URL item's path is its URL's path."""
    path = item
    if source_kind == "url":
        from urllib.parse import urlsplit

        path = urlsplit(item).path.lstrip("/") or "index"
    return {"path": path, "name": path.rsplit("/", 1)[-1], "index": str(index)}
