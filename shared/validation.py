"""DataValidator: does an export hold exactly the source's resources, once each, in the right files?

`validate_export(expected, files)` compares the ids a source holds (type -> ids) with NDJSON
files named `Type-N.ndjson` (file name -> lines) and returns a `ValidationReport`: per type the
expected and exported counts, samples of missing, extra and duplicate ids, and bad lines; plus
file-level problems (unexpected names, gaps in the `-N` numbering). Helpers read the files from a
blob container one chunk at a time and the expected ids from a FHIR server one page at a time.
Command line (exit 0 valid, 1 invalid, 2 could not validate):

    python -m shared.validation --fhir-base-url URL --types Patient,Observation [--since INSTANT]
        --connection-string CS --container C [--prefix P]

Meant for tests and acceptance runs against a source that does not change during validation.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.errors import ExportError, RetryAfterError, TransientError
from shared.sources.base import Page, Source

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

__all__ = [
    "TypeReport",
    "ValidationReport",
    "expected_ids_from_source",
    "iter_blob_lines",
    "iter_export_files",
    "main",
    "split_lines",
    "validate_export",
]

FILE_NAME = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)-(?P<part>[1-9][0-9]*)\.ndjson$")
SAMPLE_SIZE = 10


@dataclass(frozen=True)
class TypeReport:
    """The verdict for one resource type; samples are the smallest ids, so reports are stable."""

    resource_type: str
    expected: int
    exported: int  # lines holding a well-formed resource of this type, duplicates included
    files: tuple[str, ...] = ()
    missing_count: int = 0
    missing_sample: tuple[str, ...] = ()
    extra_count: int = 0
    extra_sample: tuple[str, ...] = ()
    duplicate_count: int = 0
    duplicate_sample: tuple[str, ...] = ()
    bad_line_count: int = 0
    bad_line_sample: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not (self.missing_count or self.extra_count or self.duplicate_count or self.bad_line_count)

    def render(self) -> str:
        verdict = "OK" if self.ok else "FAILED"
        lines = [
            f"{self.resource_type}: expected {self.expected}, exported {self.exported} "
            f"in {len(self.files)} file(s): {verdict}"
        ]
        for label, count, sample in (
            ("missing", self.missing_count, self.missing_sample),
            ("extra", self.extra_count, self.extra_sample),
            ("duplicated", self.duplicate_count, self.duplicate_sample),
            ("bad lines", self.bad_line_count, self.bad_line_sample),
        ):
            if count:
                more = f" (+{count - len(sample)} more)" if count > len(sample) else ""
                lines.append(f"    {label} {count}: {', '.join(sample)}{more}")
        return "\n".join(lines)


@dataclass(frozen=True)
class ValidationReport:
    types: tuple[TypeReport, ...]
    file_problems: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.file_problems and all(report.ok for report in self.types)

    def for_type(self, resource_type: str) -> TypeReport:
        return next(report for report in self.types if report.resource_type == resource_type)

    def render(self) -> str:
        failed = sum(not report.ok for report in self.types)
        head = (
            "export is VALID"
            if self.ok
            else f"export is INVALID ({failed} of {len(self.types)} types failed)"
        )
        body = [report.render() for report in self.types]
        if self.file_problems:
            body.append("file problems:")
            body.extend(f"    {problem}" for problem in self.file_problems)
        return "\n".join([head, *body])

    def __str__(self) -> str:
        return self.render()


@dataclass
class _Tally:
    """Mutable accumulator for one type while lines stream past (never leaves this module)."""

    expected: set[str]
    seen: set[str] = field(default_factory=set)
    files: list[str] = field(default_factory=list)
    exported: int = 0
    extra: set[str] = field(default_factory=set)
    duplicates: list[str] = field(default_factory=list)
    duplicate_count: int = 0
    bad: list[str] = field(default_factory=list)
    bad_count: int = 0

    def bad_line(self, where: str, problem: str, sample_size: int) -> None:
        self.bad_count += 1
        if len(self.bad) < sample_size:
            self.bad.append(f"{where}: {problem}")

    def resource(self, resource_id: str, sample_size: int) -> None:
        self.exported += 1
        if resource_id in self.seen:
            self.duplicate_count += 1
            if len(self.duplicates) < sample_size:
                self.duplicates.append(resource_id)
            return
        self.seen.add(resource_id)
        if resource_id not in self.expected:
            self.extra.add(resource_id)

    def report(self, resource_type: str, sample_size: int) -> TypeReport:
        missing = self.expected - self.seen
        return TypeReport(
            resource_type=resource_type,
            expected=len(self.expected),
            exported=self.exported,
            files=tuple(self.files),
            missing_count=len(missing),
            missing_sample=tuple(heapq.nsmallest(sample_size, missing)),
            extra_count=len(self.extra),
            extra_sample=tuple(heapq.nsmallest(sample_size, self.extra)),
            duplicate_count=self.duplicate_count,
            duplicate_sample=tuple(self.duplicates),
            bad_line_count=self.bad_count,
            bad_line_sample=tuple(self.bad),
        )


def _check_line(line: bytes, resource_type: str, require_newline: bool) -> str:
    """The resource id on `line`, or raise ValueError saying what is wrong with it."""
    if line.endswith(b"\n"):
        line = line[:-1]
    elif require_newline:
        # Pages are appended whole; a last line without `\n` means a write was cut short.
        raise ValueError("no trailing newline (truncated write?)")
    if not line.strip():
        raise ValueError("empty line")
    try:
        resource: Any = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise ValueError("not JSON") from None
    if not isinstance(resource, dict):
        raise ValueError("not a JSON object")
    if resource.get("resourceType") != resource_type:
        raise ValueError(f"resourceType {resource.get('resourceType')!r} in a file of {resource_type}")
    resource_id = resource.get("id")
    if not isinstance(resource_id, str) or not resource_id:
        raise ValueError("resource has no id")
    return resource_id


def _numbering_problems(parts: Mapping[str, list[int]]) -> list[str]:
    problems = []
    for resource_type, numbers in sorted(parts.items()):
        if sorted(numbers) != list(range(1, len(numbers) + 1)):
            problems.append(f"{resource_type}: file numbers {sorted(numbers)} are not 1..{len(numbers)}")
    return problems


def validate_export(
    expected: Mapping[str, Iterable[str]],
    files: Iterable[tuple[str, Iterable[bytes]]],
    *,
    require_newline: bool = True,
    sample_size: int = SAMPLE_SIZE,
) -> ValidationReport:
    """Compare source ids per type with exported NDJSON files, streaming each file's lines once.

    `files` yields (name, lines); the name may carry a folder prefix, its last segment must be
    `Type-N.ndjson`. Lines carry their `\\n` (as `split_lines` yields them) unless
    `require_newline` is False. Types found only in files are reported with everything extra.
    """
    tallies = {resource_type: _Tally(set(ids)) for resource_type, ids in expected.items()}
    parts: dict[str, list[int]] = {}
    problems: list[str] = []
    names_seen: set[str] = set()
    for name, lines in files:
        base = name.rpartition("/")[2]
        match = FILE_NAME.match(base)
        if match is None:
            problems.append(f"{name}: not named Type-N.ndjson; not read")
            continue
        if name in names_seen:
            problems.append(f"{name}: listed twice")
            continue
        names_seen.add(name)
        resource_type = match["type"]
        parts.setdefault(resource_type, []).append(int(match["part"]))
        tally = tallies.setdefault(resource_type, _Tally(set()))
        tally.files.append(name)
        for number, line in enumerate(lines, start=1):
            try:
                resource_id = _check_line(line, resource_type, require_newline)
            except ValueError as exc:
                tally.bad_line(f"{base}:{number}", str(exc), sample_size)
                continue
            tally.resource(resource_id, sample_size)
    problems.extend(_numbering_problems(parts))
    reports = tuple(tallies[t].report(t, sample_size) for t in sorted(tallies))
    return ValidationReport(reports, tuple(problems))


# -- reading an export from blob storage -----------------------------------------------------


def split_lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Re-cut a byte stream into lines, each with its `\\n`; a last line without one is yielded as is."""
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        start = 0
        while (end := buffer.find(b"\n", start)) != -1:
            yield bytes(buffer[start : end + 1])
            start = end + 1
        del buffer[:start]
    if buffer:
        yield bytes(buffer)


def iter_blob_lines(container: ContainerClient, blob_name: str) -> Iterator[bytes]:
    """The lines of one blob, downloaded chunk by chunk (the SDK's chunk size bounds memory)."""
    yield from split_lines(container.download_blob(blob_name).chunks())


def iter_export_files(container: ContainerClient, prefix: str = "") -> Iterator[tuple[str, Iterator[bytes]]]:
    """(name, lines) for every `.ndjson` blob under `prefix`; other blobs (a manifest) are skipped."""
    for blob in container.list_blobs(name_starts_with=prefix or None):
        if blob.name.endswith(".ndjson"):
            yield blob.name, iter_blob_lines(container, blob.name)


# -- reading the expected ids from a FHIR server ---------------------------------------------


def _fetch(
    source: Source, resource_type: str, cursor: str | None, attempts: int, sleep: Callable[[float], None]
) -> Page:
    for attempt in range(1, attempts + 1):
        try:
            return source.fetch_page(resource_type, cursor)
        except TransientError as exc:
            if attempt == attempts:
                raise
            delay = exc.retry_after_s if isinstance(exc, RetryAfterError) else 2.0**attempt
            sleep(min(delay, 30.0))
    raise AssertionError("unreachable")  # the loop returns or raises


def expected_ids_from_source(
    source: Source, types: Sequence[str], *, attempts: int = 5, sleep: Callable[[float], None] = time.sleep
) -> dict[str, Iterator[str]]:
    """type -> ids, paged lazily from `source` (one page in memory); transient errors are retried."""
    if attempts < 1:
        raise ValueError(f"attempts must be at least 1, got {attempts}")

    def ids(resource_type: str) -> Iterator[str]:
        cursor: str | None = None
        while True:
            page = _fetch(source, resource_type, cursor, attempts, sleep)
            for line in page.ndjson.splitlines():
                yield str(json.loads(line)["id"])
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    return {resource_type: ids(resource_type) for resource_type in types}


# -- command line ----------------------------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m shared.validation", description=__doc__.split("\n")[0])
    parser.add_argument("--fhir-base-url", required=True)
    parser.add_argument("--types", required=True, help="comma-separated resource types")
    parser.add_argument("--since", default=None, help="the export's _since (exclusive)")
    parser.add_argument("--type-filter", action="append", default=[], help="a _typeFilter entry (repeatable)")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument(
        "--bearer-token-env",
        default=None,
        help="name of an environment variable holding the FHIR bearer token",
    )
    parser.add_argument(
        "--connection-string",
        default=os.environ.get("AZURE_STORAGE_CONNECTION_STRING"),
        help="storage connection string (default: $AZURE_STORAGE_CONNECTION_STRING)",
    )
    parser.add_argument("--container", required=True)
    parser.add_argument("--prefix", default="")
    args = parser.parse_args(argv)
    if not args.connection_string:
        parser.error("--connection-string or $AZURE_STORAGE_CONNECTION_STRING is required")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    # Imported here so importing the validator for `validate_export` alone stays light.
    import httpx
    from azure.core.exceptions import AzureError
    from azure.storage.blob import ContainerClient

    from shared.sources.fhir import FhirSource

    args = _parse_args(argv)
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    token = os.environ.get(args.bearer_token_env) if args.bearer_token_env else None
    try:
        with (
            httpx.Client(timeout=httpx.Timeout(60.0, connect=10.0)) as http_client,
            ContainerClient.from_connection_string(args.connection_string, args.container) as container,
        ):
            source = FhirSource(
                http_client,
                args.fhir_base_url,
                types=types,
                since=args.since,
                type_filters=args.type_filter,
                page_size=args.page_size,
                bearer_token=token,
            )
            report = validate_export(
                expected_ids_from_source(source, types), iter_export_files(container, args.prefix)
            )
    except (ExportError, AzureError) as exc:
        # The message is ours or the SDK's; neither includes the token or the account key.
        # The SDK's messages run over many lines (request id, raw XML); the first says what failed.
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"could not validate: {type(exc).__name__}: {first_line}", file=sys.stderr)
        return 2
    print(report.render())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
