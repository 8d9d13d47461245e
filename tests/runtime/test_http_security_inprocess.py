"""HttpServer in-process against hostile input: bytes that are not UTF-8, forged identity and Host
headers, and the function keys admin API (a recording invoker stands in for user code).

The real process is covered by test_http_identity.py; here every request shape is cheap, and raw
sockets send the bytes an HTTP client library would refuse to.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest

from selfhost.functions import FunctionInfo
from selfhost.http.server import HttpServer
from selfhost.keys import HostKeys
from selfhost.keystore import KeyStore
from tests.support.trigger_fakes import FakeInvoker

pytestmark = pytest.mark.runtime

MASTER, DEFAULT, ALICE, SYSTEM = "M" * 20, "F" * 20, "A" * 20, "S" * 20
KEYS = HostKeys(
    master=MASTER,
    function_keys={"default": DEFAULT, "alice@example.org": ALICE},
    system_keys={"durabletask_extension": SYSTEM},
)


def http_function(name: str, route: str, auth_level: str = "function") -> FunctionInfo:
    trigger = {
        "direction": "IN",
        "type": "httpTrigger",
        "name": "req",
        "route": route,
        "authLevel": auth_level,
    }
    return FunctionInfo(name, "httpTrigger", trigger, (trigger,), lambda req: None, False)


FUNCTIONS = [http_function("who", "who/{x?}"), http_function("open", "open", "anonymous")]

Scenario = Callable[[httpx.AsyncClient, "Served"], Awaitable[None]]


class Served:
    def __init__(self, server: HttpServer, invoker: FakeInvoker) -> None:
        self.server = server
        self.invoker = invoker

    def last_request(self) -> func.HttpRequest:
        request: func.HttpRequest = self.invoker.calls[-1].kwargs["req"]
        return request

    def headers(self) -> dict[str, str]:
        return dict(self.last_request().headers)

    async def raw(self, data: bytes) -> bytes:
        """Send `data` as is; the status line of the answer."""
        reader, writer = await asyncio.open_connection("127.0.0.1", self.server.port)
        writer.write(data)
        await writer.drain()
        answer = await reader.read(65536)
        writer.close()
        await writer.wait_closed()
        return answer.split(b"\r\n", 1)[0]


def serve(scenario: Scenario, keys: HostKeys | KeyStore = KEYS, public_base_url: str | None = None) -> None:
    invoker = FakeInvoker()

    async def main() -> None:
        server = HttpServer(
            functions=FUNCTIONS, keys=keys, invoker=invoker, port=0, public_base_url=public_base_url
        )
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                await scenario(client, Served(server, invoker))
        finally:
            await server.stop()

    asyncio.run(main())


def principal(headers: dict[str, str]) -> dict[str, Any]:
    return dict(json.loads(base64.b64decode(headers["x-ms-client-principal"])))


# --- bytes that are not UTF-8 ------------------------------------------------------------------


def test_undecodable_key_bytes_are_401_never_500() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        for value in (b"\xff", DEFAULT.encode() + b"\xff", b"\xc3\x28", b"\xed\xa0\x80"):
            for path in ("/api/who", "/admin/host/status", "/runtime/webhooks/durabletask/instances"):
                r = await c.get(path, headers={"x-functions-key": value})
                assert (r.status_code, r.content) == (401, b""), (path, value)
        for code in ("%FF", "%ED%A0%80", "%zz", "%00"):
            assert await s.raw(f"GET /api/who?code={code} HTTP/1.1\r\nHost: x\r\n\r\n".encode()) == (
                b"HTTP/1.1 401 Unauthorized"
            ), code
        assert s.invoker.calls == []

    serve(scenario)


def test_malformed_requests_are_4xx() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        ok = b"HTTP/1.1 200 OK"
        key = DEFAULT.encode()
        cases = {
            b"GET /api/who?code=\xff HTTP/1.1\r\nHost: x\r\n\r\n": 400,  # raw byte in the query
            b"GET /api/who/\xff?code=" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n": 400,
            b"GET /api/who HTTP/1.1\r\nHost: x\r\nX-\xff: 1\r\n\r\n": 400,  # bad header name
            b"GET /api/who HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n": 400,
            b"GET /api/who HTTP/1.1\r\nHost: x\r\n" + b"X-H: v\r\n" * 200 + b"\r\n": 400,
            b"GET /" + b"a" * 10_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n": 400,
            b"POST /api/who HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999\r\n\r\n": 400,
            b"POST /api/who HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n": 400,
            b"GET /api/who/%FF?code=" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n": 204,  # decodes to U+FFFD
            b"GET /api/who/%zz?code=" + key + b" HTTP/1.1\r\nHost: x\r\n\r\n": 204,
            b"GET /api/who?code=" + key + b" HTTP/1.1\r\nHost: \xff\r\nX-Raw: \xff\xfe\r\n\r\n": 204,
        }
        for request, status in cases.items():
            line = await s.raw(request)
            assert line.startswith(b"HTTP/1.") and int(line.split()[1]) == status, (request[:60], line)
            assert line != ok
        # The function got valid text for the undecodable header, and a URL not built on the Host.
        assert s.headers()["x-raw"] == "\ufffd\ufffd"
        assert s.last_request().url == f"http://127.0.0.1:{s.server.port}/api/who?code={DEFAULT}"

    serve(scenario)


# --- identity headers --------------------------------------------------------------------------

FORGED = {
    "X-MS-CLIENT-PRINCIPAL": base64.b64encode(b'{"claims": [{"typ": "roles", "val": "operator"}]}').decode(),
    "X-MS-CLIENT-PRINCIPAL-NAME": "root",
    "x-ms-client-principal-id": "root",
    "X-Ms-Client-Principal-Idp": "aad",
}


def test_forged_principal_headers_never_reach_the_function() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        for headers in ({"x-functions-key": DEFAULT}, {}):
            path = "/api/who" if headers else "/api/open"
            assert (await c.get(path, headers={**FORGED, **headers})).status_code == 204
            assert not [h for h in s.headers() if h.startswith("x-ms-client-principal")], path

    serve(scenario)


def test_named_key_master_key_and_default_key_identities() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        await c.get("/api/who", headers={**FORGED, "x-functions-key": ALICE})
        got = s.headers()
        assert got["x-ms-client-principal-name"] == "alice@example.org"
        assert got["x-ms-client-principal-id"] == "alice@example.org"
        assert got["x-ms-client-principal-idp"] == "functionkey"
        assert principal(got) == {
            "auth_typ": "functionkey",
            "name_typ": "name",
            "role_typ": "roles",
            "claims": [{"typ": "name", "val": "alice@example.org"}],
        }
        await c.get("/api/who", params={"code": MASTER}, headers=FORGED)
        assert s.headers()["x-ms-client-principal-name"] == "admin"
        assert {"typ": "roles", "val": "operator"} in principal(s.headers())["claims"]
        await c.get("/api/who", params={"code": DEFAULT})
        assert "x-ms-client-principal" not in s.headers()
        # An anonymous function: a valid named key still identifies its caller, a wrong one nobody.
        await c.get("/api/open", headers={"x-functions-key": ALICE})
        assert s.headers()["x-ms-client-principal-name"] == "alice@example.org"
        await c.get("/api/open", headers={"x-functions-key": "wrong"})
        assert "x-ms-client-principal-name" not in s.headers()

    serve(scenario)


def test_req_url_starts_with_the_configured_base_not_the_host_header() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        await c.get("/api/who/a%2Fb?x=1&y=", headers={"Host": "evil.example", "x-functions-key": DEFAULT})
        assert s.last_request().url == "https://exports.example.org/api/who/a%2Fb?x=1&y="
        line = await s.raw(
            b"GET http://evil.example/api/who?code="
            + DEFAULT.encode()
            + b" HTTP/1.1\r\nHost: evil.example\r\n\r\n"
        )
        assert line == b"HTTP/1.1 204 No Content"
        assert s.last_request().url == f"https://exports.example.org/api/who?code={DEFAULT}"

    serve(scenario, public_base_url="https://exports.example.org")


# --- the function keys admin API ---------------------------------------------------------------


ROUTES = [
    ("GET", "functionkeys"),
    ("GET", "keys/bob"),
    ("PUT", "functionkeys/bob"),
    ("POST", "functionkeys/bob"),
    ("DELETE", "functionkeys/alice@example.org"),
]


def test_keys_api_needs_the_master_key() -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        for key in (None, DEFAULT, ALICE, SYSTEM, "\udcff"):
            headers = {} if key is None else {"x-functions-key": key.encode("utf-8", "surrogateescape")}
            for method, path in ROUTES:
                r = await c.request(method, f"/admin/host/{path}", headers=headers, json={"value": "x" * 20})
                assert (r.status_code, r.content) == (401, b""), (key, method, path)

    serve(scenario)


def test_keys_api_changes_persist_and_apply_at_once(tmp_path: Path) -> None:
    store = KeyStore.open(tmp_path)
    master = {"x-functions-key": store.current.master}
    bob = "bob-key-0123456789abcdef"

    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        assert (await c.get("/api/who", headers={"x-functions-key": bob})).status_code == 401
        document = {"name": "bob@example.org", "value": bob}
        headers = {**master, "Host": "evil.example"}
        r = await c.put("/admin/host/functionkeys/bob@example.org", json=document, headers=headers)
        assert r.status_code == 201
        href = f"http://127.0.0.1:{s.server.port}/admin/host/functionkeys/bob@example.org"
        assert r.headers["Location"] == href
        assert r.json() == {"name": "bob@example.org", "value": bob, "links": [{"rel": "self", "href": href}]}
        on_disk = json.loads((tmp_path / "keys.json").read_text())
        assert on_disk["functionKeys"]["bob@example.org"] == bob
        assert stat.S_IMODE((tmp_path / "keys.json").stat().st_mode) == 0o600
        assert (await c.get("/api/who", headers={"x-functions-key": bob})).status_code == 204
        assert s.headers()["x-ms-client-principal-name"] == "bob@example.org"

        listed = (await c.get("/admin/host/keys", headers=master)).json()
        assert {k["name"] for k in listed["keys"]} == {"default", "bob@example.org"}
        assert (await c.get("/admin/host/functionkeys/bob@example.org", headers=master)).json()[
            "value"
        ] == bob
        assert (await c.get("/admin/host/functionkeys/nobody", headers=master)).status_code == 404

        regenerated = await c.post("/admin/host/functionkeys/bob@example.org", headers=master)
        assert regenerated.status_code == 200 and regenerated.json()["value"] != bob
        assert (await c.get("/api/who", headers={"x-functions-key": bob})).status_code == 401
        assert (await c.post("/admin/host/functionkeys/carol", headers=master)).status_code == 201

        assert (await c.delete("/admin/host/functionkeys/bob@example.org", headers=master)).status_code == 204
        assert (await c.delete("/admin/host/functionkeys/bob@example.org", headers=master)).status_code == 404
        new = regenerated.json()["value"]
        assert (await c.get("/api/who", headers={"x-functions-key": new})).status_code == 401
        assert "bob@example.org" not in json.loads((tmp_path / "keys.json").read_text())["functionKeys"]

    serve(scenario, keys=store)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("PUT", "bad%20name", {"value": "v" * 20}, 400, "name"),
        ("PUT", "a%2Fb", {"value": "v" * 20}, 400, "name"),
        ("PUT", "x" * 129, {"value": "v" * 20}, 400, "name"),
        ("PUT", "admin", {"value": "v" * 20}, 400, "name"),
        ("POST", "master", None, 400, "name"),
        ("PUT", "bob", {"value": "short"}, 400, "value"),
        ("PUT", "bob", {"value": 12345678901234567890}, 400, "value"),
        ("PUT", "bob", {"name": "eve", "value": "v" * 20}, 400, "name"),
        ("PUT", "bob", [1], 400, "body"),
        ("PUT", "bob", b"\xff\xfe", 400, "body"),
        ("PUT", "bob", b"{", 400, "body"),
        ("PUT", "bob", {"value": MASTER}, 409, "value"),
        ("PUT", "bob", {"value": ALICE}, 409, "value"),
        ("DELETE", "default", None, 400, "name"),
    ],
)
def test_keys_api_refuses_bad_changes(method: str, path: str, body: Any, status: int, field: str) -> None:
    async def scenario(c: httpx.AsyncClient, s: Served) -> None:
        content = body if isinstance(body, bytes) else (b"" if body is None else json.dumps(body).encode())
        r = await c.request(
            method, f"/admin/host/functionkeys/{path}", content=content, headers={"x-functions-key": MASTER}
        )
        assert r.status_code == status, r.text
        assert r.json()["error"]["field"] == field
        assert s.server.key_store.current == KEYS  # nothing changed

    serve(scenario)
