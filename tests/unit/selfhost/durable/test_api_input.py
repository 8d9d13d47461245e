"""Hostile input to the durable management API (selfhost.durable.api): 400 with a message, never
a 500, and management URLs that carry the system key and the configured base, whatever the
caller presented (driven with mocked aiohttp requests over a fake engine, no server)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from multidict import CIMultiDict, CIMultiDictProxy

from selfhost.durable.api import MAX_TOP, ManagementApi
from selfhost.durable.memory_store import MemoryStore
from selfhost.durable.store import Instance, Message
from tests.support.history_builders import T0

pytestmark = pytest.mark.unit

BASE = "https://exports.example.org"
SYSTEM_KEY = "system-key-0123456789"


class Body:
    """The request payload aiohttp's `read()` drains with `readany()`."""

    def __init__(self, data: bytes) -> None:
        self._chunks = [data, b""]

    def set_read_chunk_size(self, size: int) -> None:
        pass

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


@dataclass
class FakeEngine:
    store: MemoryStore = field(default_factory=MemoryStore)
    orchestrators: dict[str, object] = field(default_factory=lambda: {"o": object()})
    entities: dict[str, object] = field(default_factory=lambda: {"counter": object()})
    calls: list[tuple[str, Any]] = field(default_factory=list)

    def start_new(self, name: str, instance_id: str | None, input_text: str | None) -> Instance:
        self.calls.append(("start", input_text))
        return Instance(instance_id or "new1", name, "e1", "Pending", input_text, T0, T0)

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        self.calls.append(("raise", input_text))

    def signal_entity(self, name: str, key: str, operation: str, input_text: str) -> str:
        self.calls.append(("signal", input_text))
        return "id"


def running_store() -> MemoryStore:
    store = MemoryStore()
    assert store.create_instance(
        Instance("i1", "o", "e1", "Running", None, T0, T0), Message("i1", "event", "{}", T0)
    )
    return store


def call(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    engine: FakeEngine | None = None,
) -> web.Response:
    fake: Any = engine or FakeEngine()  # duck-typed for the parts of Engine the API uses
    mgmt = ManagementApi(fake, "Hub", public_base=lambda: BASE, code=lambda: SYSTEM_KEY)
    subpath = path.split("?")[0].removeprefix("/runtime/webhooks/durabletask/")

    async def run() -> web.StreamResponse:
        request = make_mocked_request(method, path, payload=Body(body))
        # Set after construction: make_mocked_request encodes header values, which fails for the
        # lone surrogates aiohttp's parser produces from undecodable bytes.
        request._headers = CIMultiDictProxy(CIMultiDict(headers or {}))  # type: ignore[misc]
        return await mgmt.handle(request, subpath)

    response = asyncio.run(run())
    assert isinstance(response, web.Response)
    return response


def message(response: web.Response) -> str:
    return str(json.loads(response.text or "{}")["Message"])


LIST = "/runtime/webhooks/durabletask/instances"


BAD_TOPS = [str(10**30), "0", "-1", "1001", "²", "١", "1.5", "", " ", "1e3", "9" * 5000]


@pytest.mark.parametrize("top", BAD_TOPS)
def test_bad_top_is_400(top: str) -> None:
    response = call("GET", f"{LIST}?top={top}")
    assert response.status == 400
    assert message(response) == f"top must be a whole number from 1 to {MAX_TOP}"


def test_top_within_bounds_pages() -> None:
    assert call("GET", f"{LIST}?top=1").status == 200
    assert call("GET", f"{LIST}?top={MAX_TOP}").status == 200


@pytest.mark.parametrize(
    "value", ["yesterday", "2025-13-01", "0001-01-01T00:00:00%2B14:00", "9999-12-31T23:59:59-14:00", "%FF"]
)
@pytest.mark.parametrize("name", ["createdTimeFrom", "createdTimeTo"])
def test_bad_dates_are_400(name: str, value: str) -> None:
    for method in ("GET", "DELETE"):
        extra = "" if name == "createdTimeFrom" else "&createdTimeFrom=2025-01-01T00:00:00Z"
        response = call(method, f"{LIST}?{name}={value}{extra}")
        assert response.status == 400, (method, name, value)
        assert message(response).startswith(f"{name} must be an ISO 8601 date/time")


def test_an_undecodable_continuation_token_is_400() -> None:
    response = call("GET", LIST, headers={"x-ms-continuation-token": "a\udcffb"})
    assert (response.status, message(response)) == (
        400,
        "the x-ms-continuation-token header is not UTF-8 text",
    )


BAD_BODIES = [b"\xff\xfe{", b"{not json", b"[" * 100_000 + b"]" * 100_000, b"1" * 5000]


@pytest.mark.parametrize("body", BAD_BODIES, ids=["not-utf8", "malformed", "deep", "huge-int"])
def test_bad_start_bodies_are_400(body: bytes) -> None:
    engine = FakeEngine()
    response = call("POST", "/runtime/webhooks/durabletask/orchestrators/o", body, engine=engine)
    assert response.status == 400
    assert message(response).startswith("The request body is not valid JSON")
    assert engine.calls == []


@pytest.mark.parametrize("body", BAD_BODIES, ids=["not-utf8", "malformed", "deep", "huge-int"])
def test_bad_event_and_entity_bodies_are_400(body: bytes) -> None:
    engine = FakeEngine(store=running_store())
    json_type = {"Content-Type": "application/json"}
    raised = call("POST", "/runtime/webhooks/durabletask/instances/i1/raiseEvent/go", body, json_type, engine)
    assert raised.status == 400 and message(raised).startswith("The event data is not valid JSON")
    signal = call("POST", "/runtime/webhooks/durabletask/entities/counter/k?op=add", body, json_type, engine)
    assert signal.status == 400 and message(signal).startswith("Could not parse JSON content")
    assert engine.calls == []


def test_a_byte_order_mark_is_accepted() -> None:
    engine = FakeEngine()
    body = b"\xef\xbb\xbf" + json.dumps({"x": 1}).encode()
    assert call("POST", "/runtime/webhooks/durabletask/orchestrators/o", body, engine=engine).status == 202
    assert engine.calls == [("start", '{"x": 1}')]


def test_202_urls_carry_the_system_key_and_base_whatever_the_caller_presented() -> None:
    response = call(
        "POST",
        "/runtime/webhooks/durabletask/orchestrators/o/my-id?code=MASTER",
        headers={"Host": "evil.example", "x-functions-key": "MASTER", "X-Forwarded-Host": "evil.example"},
    )
    assert response.status == 202
    location = response.headers["Location"]
    query = f"taskHub=Hub&connection=Storage&code={SYSTEM_KEY}"
    assert location == f"{BASE}/runtime/webhooks/durabletask/instances/my-id?{query}"
    payload = json.loads(response.text or "")
    assert payload["statusQueryGetUri"] == location
    for key, url in payload.items():
        if key != "id":
            assert url.startswith(f"{BASE}/runtime/webhooks/durabletask/instances/my-id"), key
            assert url.endswith(f"&code={SYSTEM_KEY}") and "MASTER" not in url and "evil" not in url, key
