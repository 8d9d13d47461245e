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
from dataclasses import dataclass, field, replace
from typing import Any, Final, Literal

from shared._strict import ObjectReader, check_email
from shared.contracts import BlobDestinationSpec, _read_labels, read_any_destination
from shared.destinations.http_put import PutDestinationSpec
from shared.errors import ValidationError
from shared.retry import DEFAULT as DEFAULT_RETRY
from shared.retry import RetryPolicy
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


@dataclass(frozen=True, kw_only=True)
class BatchSourceSpec:
    kind: SourceKind
    container: str | None = None  # blob sources
    secret_name: str | None = None  # blob: connection string or SAS URL; url: bearer token

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "container": self.container, "secret_name": self.secret_name}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchSourceSpec:
        return cls(kind=data["kind"], container=data.get("container"), secret_name=data.get("secret_name"))


@dataclass(frozen=True, kw_only=True)
class BatchOptions:
    concurrency: int = 4  # items moving at once
    retry: RetryPolicy = DEFAULT_RETRY  # attempts per item, and the first wait between them
    failure_threshold: int | None = None  # failed items after which no new item starts
    partial_failure: Literal["fail", "succeed"] = "fail"  # the batch's state when some items failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "concurrency": self.concurrency,
            "retry": {
                "first_retry_interval_ms": self.retry.first_retry_interval_ms,
                "max_attempts": self.retry.max_attempts,
            },  # fmt: skip
            "failure_threshold": self.failure_threshold,
            "partial_failure": self.partial_failure,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchOptions:
        return _read_options(ObjectReader(data, "options"))


@dataclass(frozen=True, kw_only=True)
class BatchRequest:
    """A batch as stored in its record and passed to its orchestration (without its items)."""

    source: BatchSourceSpec
    destination: DestinationSpec
    options: BatchOptions = field(default_factory=BatchOptions)
    item_count: int
    requested_by: str
    labels: tuple[tuple[str, str], ...] = ()

    def secret_names(self) -> tuple[str, ...]:
        return tuple(n for n in (self.source.secret_name, self.destination.secret_name) if n)

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source.to_dict(),
            "destination": self.destination.to_dict(),
            "options": self.options.to_dict(),
            "item_count": self.item_count,
            "requested_by": self.requested_by,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BatchRequest:
        destination: DestinationSpec
        if data["destination"].get("kind") == "http_put":
            destination = PutDestinationSpec.from_dict(data["destination"])
        else:
            destination = BlobDestinationSpec.from_dict(data["destination"])
        return cls(
            source=BatchSourceSpec.from_dict(data["source"]),
            destination=destination,
            options=BatchOptions.from_dict(data.get("options") or {}),
            item_count=int(data["item_count"]),
            requested_by=str(data["requested_by"]),
            labels=tuple(sorted((data.get("labels") or {}).items())),
        )


def parse_batch_request(
    body: Mapping[str, Any], *, job_id: str, default_container: str
) -> tuple[BatchRequest, tuple[str, ...], dict[str, str]]:
    """The request, its items, and the secrets to store ({secret name: value}) of a POST body."""
    reader = ObjectReader(body, "")
    secrets: dict[str, str] = {}
    source = _read_source(reader.nested("source"), job_id, secrets)
    items = tuple(reader.texts("items", max_items=MAX_ITEMS, max_len=1024))
    if not items:
        raise ValidationError("items", "must name at least one item")
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        if first.setdefault(item, i) != i:
            raise ValidationError(f"items[{i}]", f"is listed twice (also items[{first[item]}])")
    destination = _read_batch_destination(reader.nested("destination"), job_id, secrets, default_container)
    options_reader = reader.nested("options", None)
    options = _read_options(options_reader) if options_reader is not None else BatchOptions()
    requested_by = check_email(reader.field("requested_by"), reader.text("requested_by", max_len=254))
    labels = _read_labels(reader.nested("labels", None))
    reader.finish()
    request = BatchRequest(source=source, destination=destination, options=options, item_count=len(items),
                           requested_by=requested_by, labels=labels)  # fmt: skip
    return request, items, secrets


def _read_source(reader: ObjectReader, job_id: str, secrets: dict[str, str]) -> BatchSourceSpec:
    kind = reader.text("kind", max_len=16)
    if kind not in ("blob", "url", "local"):
        raise ValidationError(reader.field("kind"), "must be blob, url or local")
    container = reader.text("container", None, max_len=63) if kind == "blob" else None
    if kind == "blob" and container is None:
        raise ValidationError(reader.field("container"), "is required for a blob source")
    secret = reader.text("secret", None, max_len=MAX_SECRET_VALUE_LENGTH) if kind != "local" else None
    reader.finish()
    name = None
    if secret is not None:
        name = new_secret_name(job_id, ROLE_SOURCE)
        secrets[name] = secret
    return BatchSourceSpec(kind=kind, container=container, secret_name=name)  # type: ignore[arg-type]


def _read_batch_destination(
    reader: ObjectReader, job_id: str, secrets: dict[str, str], default_container: str
) -> DestinationSpec:
    spec, value = read_any_destination(reader, api=True, default_container=default_container)
    if value is None:
        return spec
    name = new_secret_name(job_id, ROLE_DESTINATION)
    secrets[name] = value
    return replace(spec, secret_name=name)


def _read_options(reader: ObjectReader) -> BatchOptions:
    defaults = BatchOptions()
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
    threshold = reader.integer("failure_threshold", None, lo=1, hi=MAX_ITEMS)
    partial = reader.text("partial_failure", defaults.partial_failure, max_len=16)
    if partial not in ("fail", "succeed"):
        raise ValidationError(reader.field("partial_failure"), "must be fail or succeed")
    options = BatchOptions(
        concurrency=reader.integer("concurrency", defaults.concurrency, lo=1, hi=32),
        retry=retry,
        failure_threshold=threshold,
        partial_failure=partial,  # type: ignore[arg-type]
    )
    reader.finish()
    return options


def item_values(item: str, index: int, source_kind: str) -> dict[str, str]:
    """The values an item offers to a PUT URL template: `path` (its relative path), `name`
    (its last segment) and `index`; a URL item's path is its URL's path."""
    path = item
    if source_kind == "url":
        from urllib.parse import urlsplit

        path = urlsplit(item).path.lstrip("/") or "index"
    return {"path": path, "name": path.rsplit("/", 1)[-1], "index": str(index)}
