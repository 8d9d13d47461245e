"""The page activity seals a next link that carries a token before it reaches the orchestration
(history, checkpoint, job record) and opens it again for the next page; plain links stay plain."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest

from shared import exporting
from shared.contracts import PageTask, parse_export_request
from shared.secrets.memory import MemorySecretStore
from shared.sources import Page, Searches
from shared.sources.cursor_seal import PREFIX, SEALING_KEY_SECRET

pytestmark = pytest.mark.unit

TOKEN = "page-token-81d0c2"
BASE = "https://fhir.example.test/r4/Patient"
REQUEST, _ = parse_export_request(
    {
        "source": {"kind": "fhir", "base_url": "https://fhir.example.test/r4", "types": ["Patient"]},
        "destination": {"kind": "blob", "container": "exports"},
        "requested_by": "test@example.com",
    }
)


@dataclass
class LinkSource:
    """Three pages whose next links are `links[0]`, `links[1]`, then none."""

    links: tuple[str, str]
    reads: list[str | None] = field(default_factory=list)

    def check_connection(self) -> None:
        return None

    def searches(self, resource_type: str) -> Searches:
        return Searches()

    def fetch_page(self, resource_type: str, cursor: str | None, *, query: int = 0) -> Page:
        self.reads.append(cursor)
        index = 0 if cursor is None else self.links.index(cursor) + 1
        body = f'{{"resourceType":"Patient","id":"p{index}"}}\n'.encode()
        nxt = self.links[index] if index < len(self.links) else None
        return Page(resource_type, body, 1, nxt, ids=(f"p{index}",))


class Staged:
    def stage(self, file_name: str, block_id: str, data: bytes) -> None:
        return None


@pytest.fixture(autouse=True)
def fresh_seal() -> Iterator[None]:
    exporting._cursor_seal = None
    yield
    exporting._cursor_seal = None


def read_all(source: LinkSource, deps: Any, monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    monkeypatch.setattr(exporting, "_source", lambda request, deps, job_id: source)
    monkeypatch.setattr(exporting, "_destination", lambda request, deps, job_id: Staged())
    monkeypatch.setattr(exporting, "_cancelled", lambda deps, job_id: False)
    stored, cursor = [], None
    for page in range(1, 4):
        task = PageTask(job_id="j1", request=REQUEST, type="Patient", cursor=cursor, page=page,
                        file_sequence=1, query=0)  # fmt: skip
        out = exporting.export_page(task, deps)
        assert out.result is not None and out.result.error is None, out
        cursor = out.result.next_cursor
        stored.append(cursor)
    return stored


def test_next_links_with_a_token_are_stored_sealed(monkeypatch: pytest.MonkeyPatch) -> None:
    links = (f"{BASE}?_getpages=a&token={TOKEN}", f"{BASE}?_getpages=b&token={TOKEN}")
    store = MemorySecretStore()
    source = LinkSource(links)
    stored = read_all(source, SimpleNamespace(secrets=store), monkeypatch)
    assert stored[2] is None
    assert all(c is not None and c.startswith(PREFIX) and TOKEN not in c for c in stored[:2])
    assert source.reads == [None, *links]  # the source itself sees the plain links
    assert SEALING_KEY_SECRET in store.values and len(store.values) == 2  # the key, and by its id


def test_plain_next_links_stay_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    links = (f"{BASE}?_count=5&ct=MTA6Mw", f"{BASE}?_count=5&ct=MTU6NA")
    stored = read_all(LinkSource(links), None, monkeypatch)  # no deps: the store is never needed
    assert stored == [*links, None]


def test_a_sealed_cursor_without_its_key_fails_the_page_permanently(monkeypatch: pytest.MonkeyPatch) -> None:
    links = (f"{BASE}?token={TOKEN}&p=1", f"{BASE}?token={TOKEN}&p=2")
    store = MemorySecretStore()
    sealed = read_all(LinkSource(links), SimpleNamespace(secrets=store), monkeypatch)[0]
    store.values.clear()
    exporting._cursor_seal = None  # another process, after the key was lost
    task = PageTask(
        job_id="j1", request=REQUEST, type="Patient", cursor=sealed, page=2, file_sequence=1, query=0
    )
    out = exporting.export_page(task, SimpleNamespace(secrets=store))  # type: ignore[arg-type]
    assert out.result is not None and out.result.error is not None
    assert SEALING_KEY_SECRET in out.result.error and TOKEN not in out.result.error
