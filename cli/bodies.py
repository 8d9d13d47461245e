"""Request bodies for `submit` and `retry`: read from a JSON file (`-` for stdin) or made from flags.

Only what is needed to build a body is checked here; the service validates the rest and names
the field it refuses (the error line shows it). Secrets belong in files, not in flags: the
command line of a process is visible to every user of the machine.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.errors import ConfigError

__all__ = [
    "BatchFlags",
    "ExportFlags",
    "batch_body",
    "export_body",
    "load_json",
    "parse_labels",
    "with_overrides",
]

DEFAULT_TEMPLATE = "{base}/{path}"


def load_json(path: str, what: str = "body") -> dict[str, Any]:
    """The JSON object in file `path` (`-`: standard input)."""
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the {what} file {path}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a JSON object, not {type(data).__name__}")
    return data


def parse_labels(labels: Sequence[str]) -> dict[str, str]:
    """`key=value` flags as a mapping."""
    found: dict[str, str] = {}
    for text in labels:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--label must be key=value, not {text!r}")
        found[key.strip()] = value
    return found


def with_overrides(
    body: Mapping[str, Any], requested_by: str | None, labels: Mapping[str, str]
) -> dict[str, Any]:
    """A file's body with `--requested-by` and `--label` applied over it."""
    result = dict(body)
    if requested_by:
        result["requested_by"] = requested_by
    if labels:
        result["labels"] = {**(result.get("labels") or {}), **labels}
    return result


@dataclass(frozen=True)
class BatchFlags:
    """A quick batch from flags: items of one source to a PUT server or a Blob container."""

    items: Sequence[str] = ()
    container: str | None = None  # a blob source container
    source_kind: str = "blob"
    put_url: str | None = None
    template: str | None = None
    create_parents: bool = True
    dest_container: str | None = None
    dest_prefix: str | None = None
    concurrency: int | None = None
    requested_by: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def given(self) -> bool:
        """Whether a flag that builds the body was given (they cannot be mixed with a file)."""
        return (
            bool(self.items or self.container or self.put_url or self.template or self.dest_container)
            or self.dest_prefix is not None
            or self.concurrency is not None
        )


def batch_body(flags: BatchFlags) -> dict[str, Any]:
    if not flags.items:
        raise ConfigError("a batch needs a JSON file or at least one --item")
    if flags.source_kind == "blob" and not flags.container:
        raise ConfigError("--container (the source container) is needed for blob items")
    if flags.source_kind != "blob" and flags.container:
        raise ConfigError(f"--container is for blob sources, not {flags.source_kind!r}")
    if bool(flags.put_url) == bool(flags.dest_container):
        raise ConfigError("give one destination: --put-url (an HTTP PUT server) or --dest-container")
    if flags.template and not flags.put_url:
        raise ConfigError("--template goes with --put-url")
    if flags.dest_prefix is not None and not flags.dest_container:
        raise ConfigError("--dest-prefix goes with --dest-container")
    if not flags.requested_by:
        raise ConfigError("--requested-by (an e-mail address) is needed, or set BULK_EXPORT_REQUESTED_BY")
    source: dict[str, Any] = {"kind": flags.source_kind}
    if flags.container:
        source["container"] = flags.container
    destination: dict[str, Any]
    if flags.put_url:
        destination = {
            "kind": "http_put",
            "base_url": flags.put_url.rstrip("/"),
            "url_template": flags.template or DEFAULT_TEMPLATE,
            "create_parents": flags.create_parents,
        }
    else:
        destination = {"kind": "blob", "container": flags.dest_container}
        if flags.dest_prefix:
            destination["path_prefix"] = flags.dest_prefix
    body: dict[str, Any] = {
        "source": source,
        "items": list(flags.items),
        "destination": destination,
        "requested_by": flags.requested_by,
    }
    if flags.concurrency is not None:
        body["options"] = {"concurrency": flags.concurrency}
    if flags.labels:
        body["labels"] = dict(flags.labels)
    return body


@dataclass(frozen=True)
class ExportFlags:
    """A quick FHIR export from flags: some types of a source into a Blob container."""

    types: Sequence[str] = ()
    base_url: str | None = None  # else the service's default source
    since: str | None = None
    container: str | None = None  # else the service's default container
    prefix: str | None = None
    requested_by: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def given(self) -> bool:
        return bool(self.types or self.base_url or self.since or self.container or self.prefix)


def export_body(flags: ExportFlags) -> dict[str, Any]:
    types = [t.strip() for entry in flags.types for t in entry.split(",") if t.strip()]
    if not types:
        raise ConfigError("an export needs a JSON file or at least one --type")
    if not flags.requested_by:
        raise ConfigError("--requested-by (an e-mail address) is needed, or set BULK_EXPORT_REQUESTED_BY")
    source: dict[str, Any] = {"kind": "fhir", "types": types}
    if flags.base_url:
        source["base_url"] = flags.base_url
    if flags.since:
        source["since"] = flags.since
    destination: dict[str, Any] = {"kind": "blob"}
    if flags.container:
        destination["container"] = flags.container
    if flags.prefix:
        destination["path_prefix"] = flags.prefix
    body: dict[str, Any] = {"source": source, "destination": destination, "requested_by": flags.requested_by}
    if flags.labels:
        body["labels"] = dict(flags.labels)
    return body
