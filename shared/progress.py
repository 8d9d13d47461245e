"""Progress contracts the export orchestration keeps and activities return (metadata, never bytes).

A type's checkpoint is small on purpose (it is orchestration input after `continue_as_new`):
its cursor, how many pages are done, and per output file the block ids staged so far. The pure
helpers (`with_block`, `mark_committed`, `is_full`) are the bookkeeping the seed's ExportJobTask
does; the orchestrator calls them, this module performs no I/O. Re-exported by `shared.contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from shared._strict import SCHEMA_VERSION, ObjectReader, read_schema_version
from shared.errors import ValidationError
from shared.jobs import JobState

# Azure allows at most 50,000 committed blocks per blob: a file rolls over before that, however
# small its pages are.
MAX_BLOCKS_PER_FILE: Final = 50_000
_BIG: Final = 2**53  # the largest integer every JSON reader keeps exactly


def file_name(resource_type: str, sequence: int) -> str:
    """`Patient-1.ndjson`: one resource type per file, numbered from 1 (FHIR Bulk Data convention)."""
    return f"{resource_type}-{sequence}.ndjson"


@dataclass(frozen=True, kw_only=True)
class FileState:
    """One output file. `blocks` lists every block id in file order; the whole list is committed
    each time, so `staged_bytes`/`resources` include what is already committed."""

    type: str
    sequence: int
    name: str
    blocks: tuple[str, ...] = ()
    committed_bytes: int = 0
    staged_bytes: int = 0
    resources: int = 0
    committed_resources: int = 0

    @classmethod
    def start(cls, resource_type: str, sequence: int) -> FileState:
        return cls(type=resource_type, sequence=sequence, name=file_name(resource_type, sequence))

    @property
    def pending(self) -> bool:
        """True when blocks were staged since the last commit."""
        return self.staged_bytes != self.committed_bytes or self.resources != self.committed_resources

    def with_block(self, block_id: str, size_bytes: int, resources: int) -> FileState:
        if block_id in self.blocks:
            raise ValueError(f"block {block_id} is already part of {self.name}")
        return replace(
            self,
            blocks=(*self.blocks, block_id),
            staged_bytes=self.staged_bytes + size_bytes,
            resources=self.resources + resources,
        )

    def mark_committed(self) -> FileState:
        return replace(self, committed_bytes=self.staged_bytes, committed_resources=self.resources)

    def is_full(self, max_file_bytes: int) -> bool:
        """The next page goes to a new file once this one reached the size or block limit."""
        return self.staged_bytes >= max_file_bytes or len(self.blocks) >= MAX_BLOCKS_PER_FILE

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "sequence": self.sequence,
            "name": self.name,
            "blocks": list(self.blocks),
            "committed_bytes": self.committed_bytes,
            "staged_bytes": self.staged_bytes,
            "resources": self.resources,
            "committed_resources": self.committed_resources,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "file") -> FileState:
        return cls.from_reader(ObjectReader(data, path))

    @classmethod
    def from_reader(cls, r: ObjectReader) -> FileState:
        state = cls(
            type=r.text("type", max_len=64),
            sequence=r.integer("sequence", lo=1, hi=_BIG),
            name=r.text("name", max_len=1024),
            blocks=r.texts("blocks", (), max_items=MAX_BLOCKS_PER_FILE, max_len=128),
            committed_bytes=r.integer("committed_bytes", 0, lo=0, hi=_BIG),
            staged_bytes=r.integer("staged_bytes", 0, lo=0, hi=_BIG),
            resources=r.integer("resources", 0, lo=0, hi=_BIG),
            committed_resources=r.integer("committed_resources", 0, lo=0, hi=_BIG),
        )
        r.finish()
        return state


@dataclass(frozen=True, kw_only=True)
class TypeCheckpoint:
    """Where the export of one resource type stands; enough to resume after any crash."""

    type: str
    # The source's continuation (e.g. a next link) within search `query`; None before its page 1.
    cursor: str | None = None
    pages_done: int = 0
    files: tuple[FileState, ...] = ()
    done: bool = False
    consecutive_failures: int = 0
    query: int = 0  # which of the type's searches (`shared.sources.Searches`) is being read

    @property
    def current_file(self) -> FileState | None:
        return self.files[-1] if self.files else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "type": self.type,
            "cursor": self.cursor,
            "pages_done": self.pages_done,
            "files": [f.to_dict() for f in self.files],
            "done": self.done,
            "consecutive_failures": self.consecutive_failures,
            "query": self.query,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "") -> TypeCheckpoint:
        r = ObjectReader(data, path)
        read_schema_version(r)
        files = tuple(FileState.from_reader(item) for item in r.nested_list("files"))
        checkpoint = cls(
            type=r.text("type", max_len=64),
            cursor=r.text("cursor", None, max_len=16_384),
            pages_done=r.integer("pages_done", 0, lo=0, hi=_BIG),
            files=files,
            done=r.flag("done", False),
            consecutive_failures=r.integer("consecutive_failures", 0, lo=0, hi=_BIG),
            query=r.integer("query", 0, lo=0, hi=_BIG),
        )
        r.finish()
        return checkpoint


@dataclass(frozen=True, kw_only=True)
class PageResult:
    """What the page activity did: one page read and staged as `block_id` of `file_name`.
    `error` set means a permanent failure (nothing staged); the orchestrator records it."""

    type: str
    page: int
    file_name: str
    block_id: str
    size_bytes: int = 0
    resources: int = 0
    next_cursor: str | None = None  # None: this was the last page of its search
    error: str | None = None
    # With no next_cursor: the search to read next (from its first page); None: the type is done.
    next_query: int | None = None

    @property
    def last_page(self) -> bool:
        return self.error is None and self.next_cursor is None and self.next_query is None

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **_plain(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PageResult:
        r = ObjectReader(data, "")
        read_schema_version(r)
        result = cls(
            type=r.text("type", max_len=64),
            page=r.integer("page", lo=0, hi=_BIG),
            file_name=r.text("file_name", max_len=1024),
            block_id=r.text("block_id", max_len=128),
            size_bytes=r.integer("size_bytes", 0, lo=0, hi=_BIG),
            resources=r.integer("resources", 0, lo=0, hi=_BIG),
            next_cursor=r.text("next_cursor", None, max_len=16_384),
            error=r.text("error", None, max_len=4096),
            next_query=r.integer("next_query", None, lo=0, hi=_BIG),
        )
        r.finish()
        return result


@dataclass(frozen=True, kw_only=True)
class CommitResult:
    """A file's block list committed: its size, resource count and URL (never with a SAS)."""

    type: str
    file_name: str
    block_count: int = 0
    committed_bytes: int = 0
    committed_resources: int = 0
    url: str | None = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **_plain(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CommitResult:
        r = ObjectReader(data, "")
        read_schema_version(r)
        result = cls(
            type=r.text("type", max_len=64),
            file_name=r.text("file_name", max_len=1024),
            block_count=r.integer("block_count", 0, lo=0, hi=MAX_BLOCKS_PER_FILE),
            committed_bytes=r.integer("committed_bytes", 0, lo=0, hi=_BIG),
            committed_resources=r.integer("committed_resources", 0, lo=0, hi=_BIG),
            url=r.text("url", None, max_len=4096),
            error=r.text("error", None, max_len=4096),
        )
        r.finish()
        return result


@dataclass(frozen=True, kw_only=True)
class OutputFile:
    """One finished file, as a manifest `output[]` entry would list it."""

    type: str
    name: str
    url: str
    resources: int
    size_bytes: int

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "file") -> OutputFile:
        return cls.from_reader(ObjectReader(data, path))

    @classmethod
    def from_reader(cls, r: ObjectReader) -> OutputFile:
        out = cls(
            type=r.text("type", max_len=64),
            name=r.text("name", max_len=1024),
            url=r.text("url", max_len=4096),
            resources=r.integer("resources", lo=0, hi=_BIG),
            size_bytes=r.integer("size_bytes", lo=0, hi=_BIG),
        )
        r.finish()
        return out


@dataclass(frozen=True, kw_only=True)
class ExportOutcome:
    """The orchestration's result: final state, the files written, and why it failed if it did."""

    job_id: str
    state: JobState
    files: tuple[OutputFile, ...] = ()
    resources: int = 0
    failed_types: tuple[str, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "job_id": self.job_id,
            "state": self.state.value,
            "files": [_plain(f) for f in self.files],
            "resources": self.resources,
            "failed_types": list(self.failed_types),
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExportOutcome:
        r = ObjectReader(data, "")
        read_schema_version(r)
        job_id = r.text("job_id", max_len=256)
        state_text = r.text("state", max_len=32)
        try:
            state = JobState(state_text)
        except ValueError:
            names = ", ".join(s.value for s in JobState)
            raise ValidationError(r.field("state"), f"must be one of {names}") from None
        files = tuple(OutputFile.from_reader(item) for item in r.nested_list("files"))
        outcome = cls(
            job_id=job_id,
            state=state,
            files=files,
            resources=r.integer("resources", 0, lo=0, hi=_BIG),
            failed_types=r.texts("failed_types", (), max_len=64),
            error=r.text("error", None, max_len=4096),
        )
        r.finish()
        return outcome


def _plain(obj: PageResult | CommitResult | OutputFile) -> dict[str, Any]:
    """Field name -> value for contracts whose fields are all JSON scalars."""
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}
