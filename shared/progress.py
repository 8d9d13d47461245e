"""Progress contracts the export orchestration keeps and activities return (metadata, never bytes).

A type's checkpoint is small on purpose (it is orchestration input after `continue_as_new`):
its cursor, how many pages are done, and per output file the block ids staged so far. The pure
helpers (`with_block`, `mark_committed`, `is_full`) are the bookkeeping the seed's ExportJobTask
does; the orchestrator calls them, this module performs no I/O. Re-exported by `shared.contracts`.
"""

from __future__ import annotations

from typing import Annotated, ClassVar, Final

from pydantic import BeforeValidator, Field

from shared._strict import SCHEMA_VERSION, Contract, Count, Items, SchemaVersion, fail, replace
from shared.jobs import JobState

# Azure allows at most 50,000 committed blocks per blob: a file rolls over before that, however
# small its pages are.
MAX_BLOCKS_PER_FILE: Final = 50_000

TypeName = Annotated[str, Field(min_length=1, max_length=64)]
Name = Annotated[str, Field(min_length=1, max_length=1024)]
BlockId = Annotated[str, Field(min_length=1, max_length=128)]
Cursor = Annotated[str, Field(min_length=1, max_length=16_384)]
Text = Annotated[str, Field(min_length=1, max_length=4096)]
Sequence = Annotated[int, Field(ge=1, le=2**53)]


def file_name(resource_type: str, sequence: int) -> str:
    """`Patient-1.ndjson`: one resource type per file, numbered from 1 (FHIR Bulk Data convention)."""
    return f"{resource_type}-{sequence}.ndjson"


class FileState(Contract):
    """One output file. `blocks` lists every block id in file order; the whole list is committed
    each time, so `staged_bytes`/`resources` include what is already committed."""

    type: TypeName
    sequence: Sequence
    name: Name
    blocks: Annotated[Items[BlockId], Field(max_length=MAX_BLOCKS_PER_FILE)] = ()
    committed_bytes: Count = 0
    staged_bytes: Count = 0
    resources: Count = 0
    committed_resources: Count = 0

    _path: ClassVar[str] = "file"

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


class TypeCheckpoint(Contract):
    """Where the export of one resource type stands; enough to resume after any crash."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    type: TypeName
    # The source's continuation (e.g. a next link) within search `query`; None before its page 1.
    cursor: Cursor | None = None
    pages_done: Count = 0
    files: Items[FileState] = ()
    done: bool = False
    consecutive_failures: Count = 0
    query: Count = 0  # which of the type's searches (`shared.sources.Searches`) is being read

    @property
    def current_file(self) -> FileState | None:
        return self.files[-1] if self.files else None


class PageResult(Contract):
    """What the page activity did: one page read and staged as `block_id` of `file_name`.
    `error` set means a permanent failure (nothing staged); the orchestrator records it."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    type: TypeName
    page: Count
    file_name: Name
    block_id: BlockId
    size_bytes: Count = 0
    resources: Count = 0
    next_cursor: Cursor | None = None  # None: this was the last page of its search
    error: Text | None = None
    # With no next_cursor: the search to read next (from its first page); None: the type is done.
    next_query: Count | None = None

    @property
    def last_page(self) -> bool:
        return self.error is None and self.next_cursor is None and self.next_query is None


class CommitResult(Contract):
    """A file's block list committed: its size, resource count and URL (never with a SAS)."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    type: TypeName
    file_name: Name
    block_count: Annotated[int, Field(ge=0, le=MAX_BLOCKS_PER_FILE)] = 0
    committed_bytes: Count = 0
    committed_resources: Count = 0
    url: Text | None = None
    error: Text | None = None


class OutputFile(Contract):
    """One finished file, as a manifest `output[]` entry would list it."""

    type: TypeName
    name: Name
    url: Text
    resources: Count
    size_bytes: Count

    _path: ClassVar[str] = "file"


def _job_state(value: object) -> object:
    """A record holds the state's text; a `JobState` is what the code passes."""
    if isinstance(value, str) and not isinstance(value, JobState):
        try:
            return JobState(value)
        except ValueError:
            fail(f"must be one of {', '.join(s.value for s in JobState)}")
    return value


class ExportOutcome(Contract):
    """The orchestration's result: final state, the files written, and why it failed if it did."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    job_id: Annotated[str, Field(min_length=1, max_length=256)]
    state: Annotated[JobState, BeforeValidator(_job_state)]
    files: Items[OutputFile] = ()
    resources: Count = 0
    failed_types: Annotated[Items[TypeName], Field(max_length=1000)] = ()
    error: Text | None = None
