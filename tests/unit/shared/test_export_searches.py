"""A type read through several searches (ORed filters x patient chunks), page by page, with the
page activity's de-duplication, the orchestrator's pure decisions, continue-as-new and crashes:
every resource is written exactly once. Fakes for the source, destination and work store."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared import export_plan as plan
from shared import exporting
from shared._strict import replace
from shared.contracts import ExportOptions, PageTask, TypeCheckpoint, parse_export_request
from shared.sources import Page, Searches
from shared.workstore import MemoryWorkStore

pytestmark = pytest.mark.unit

REQUEST, _ = parse_export_request(
    {
        "source": {"kind": "fhir", "base_url": "http://127.0.0.1:1/fhir", "types": ["Patient"]},
        "destination": {"kind": "blob", "container": "exports"},
        "requested_by": "test@example.com",
    }
)


@dataclass
class ScriptedSource:
    """`pages[query]` is that search's pages of ids; `overlap` as in `Searches`."""

    pages: Sequence[Sequence[Sequence[str]]]
    overlap: int
    reads: list[tuple[int, str | None]] = field(default_factory=list)

    def check_connection(self) -> None:
        return None

    def searches(self, resource_type: str) -> Searches:
        return Searches(count=len(self.pages), overlap=self.overlap)

    def fetch_page(self, resource_type: str, cursor: str | None, *, query: int = 0) -> Page:
        self.reads.append((query, cursor))
        index = int(cursor.split(":")[1]) if cursor else 0
        ids = self.pages[query][index] if self.pages[query] else []
        body = b"".join(json.dumps({"resourceType": resource_type, "id": i}).encode() + b"\n" for i in ids)
        more = index + 1 < len(self.pages[query])
        return Page(resource_type, body, len(ids), f"{query}:{index + 1}" if more else None, ids=tuple(ids))


@dataclass
class BlockStore:
    """A destination: staged blocks survive a crash (as in Azure), commits set a file's blocks."""

    staged: dict[tuple[str, str], bytes] = field(default_factory=dict)
    committed: dict[str, list[str]] = field(default_factory=dict)

    def check_connection(self) -> None:
        return None

    def stage(self, file_name: str, block_id: str, data: bytes) -> None:
        self.staged[(file_name, block_id)] = data

    def commit(self, file_name: str, block_ids: Sequence[str], metadata: Mapping[str, str]) -> None:
        self.committed[file_name] = list(block_ids)

    def delete(self, file_names: Any) -> None:
        return None

    def url(self, file_name: str) -> str:
        return f"memory://{file_name}"

    def ids(self) -> list[str]:
        lines = (
            line
            for name, blocks in sorted(self.committed.items())
            for block in blocks
            for line in self.staged[(name, block)].splitlines()
        )
        return [str(json.loads(line)["id"]) for line in lines]


@pytest.fixture(autouse=True)
def no_leftovers() -> Iterator[None]:
    yield
    exporting._kept_cache.clear()


def export(
    source: ScriptedSource, monkeypatch: pytest.MonkeyPatch, options: ExportOptions, crashes: set[int]
) -> tuple[BlockStore, MemoryWorkStore]:
    """What `export_type` does, with the process dying after the page calls in `crashes`."""
    dest, work = BlockStore(), MemoryWorkStore()
    exporting._kept_cache.clear()  # a new job: the process caches by job id, and every run here is "j1"
    monkeypatch.setattr(exporting, "_source", lambda request, deps, job_id: source)
    monkeypatch.setattr(exporting, "_destination", lambda request, deps, job_id: dest)
    monkeypatch.setattr(exporting, "_work", lambda deps: work)
    monkeypatch.setattr(exporting, "_cancelled", lambda deps, job_id: False)
    last = cp = plan.start(TypeCheckpoint(type="Patient"))
    since, calls = 0, 0
    while True:
        task = PageTask(job_id="j1", request=REQUEST, type="Patient", cursor=cp.cursor, page=cp.pages_done + 1,
                        file_sequence=cp.files[-1].sequence, query=cp.query)  # fmt: skip
        out = exporting.export_page(task, None)  # type: ignore[arg-type]
        assert out.result is not None and out.result.error is None, out
        calls += 1
        if calls in crashes:  # lost: this process's caches and everything since the last commit
            exporting._kept_cache.clear()
            cp, since = last, 0
            continue
        cp, decision = plan.after_page(cp, out.result, options, since)
        since += 1
        if decision.commit:
            dest.commit(cp.files[-1].name, cp.files[-1].blocks, {})
            last = cp = plan.committed(cp, decision)
            since = 0
        elif decision.checkpoint:
            last = cp = replace(cp, consecutive_failures=0)
            since = 0
        if decision.done:
            return dest, work


def test_overlapping_filters_write_each_resource_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Patient?gender=male and Patient?active=true: b and c match both.
    source = ScriptedSource([[["a", "b"], ["c"]], [["b", "d"], ["c", "e"]]], overlap=2)
    dest, work = export(source, monkeypatch, ExportOptions(commit_every_pages=1), set())
    assert dest.ids() == ["a", "b", "c", "d", "e"]
    assert [q for q, _ in source.reads] == [0, 0, 1, 1]
    assert work.kept_ids("j1", "Patient", range(1)) == {"a", "b", "c"}  # only what a later search needs
    assert work.kept_ids("j1", "Patient", range(1, 2)) == set()


def test_chunks_alone_store_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    source = ScriptedSource([[["a"]], [], [["b"], ["c"]]], overlap=1)  # 3 chunks, one empty
    dest, work = export(source, monkeypatch, ExportOptions(commit_every_pages=1), set())
    assert dest.ids() == ["a", "b", "c"]
    assert work.reads == 0 and work.kept_ids("j1", "Patient", range(3)) == set()


def test_many_empty_searches_still_checkpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    decisions: list[plan.PageDecision] = []
    real = plan.after_page

    def spy(*args: Any) -> Any:
        cp, decision = real(*args)
        decisions.append(decision)
        return cp, decision

    monkeypatch.setattr(plan, "after_page", spy)
    source = ScriptedSource([[] for _ in range(25)] + [[["z"]]], overlap=1)
    dest, _ = export(source, monkeypatch, ExportOptions(commit_every_pages=10), set())
    assert dest.ids() == ["z"]
    assert sum(d.checkpoint for d in decisions) == 2  # after pages 10 and 20: history stays bounded


@st.composite
def scripts(draw: st.DrawFn) -> ScriptedSource:
    filters, chunks = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    size = draw(st.integers(1, 3))
    pages: list[list[list[str]]] = []
    for c in range(chunks):  # chunks hold different patients' resources: they never overlap
        pool = [f"c{c}-{i}" for i in range(8)]
        for _ in range(filters):
            found = draw(st.lists(st.sampled_from(pool), unique=True, max_size=8))
            pages.append([found[i : i + size] for i in range(0, len(found), size)])
    return ScriptedSource(pages, overlap=filters)


@settings(max_examples=150, deadline=None)
@given(scripts(), st.integers(1, 3), st.sets(st.integers(1, 40), max_size=4))
def test_every_resource_once_across_searches_commits_and_crashes(
    source: ScriptedSource, every: int, crashes: set[int]
) -> None:
    expected = list(dict.fromkeys(i for search in source.pages for page in search for i in page))
    with pytest.MonkeyPatch.context() as monkeypatch:
        dest, _ = export(source, monkeypatch, ExportOptions(commit_every_pages=every), crashes)
    exported = dest.ids()
    assert sorted(exported) == sorted(expected)
    assert len(exported) == len(set(exported))
