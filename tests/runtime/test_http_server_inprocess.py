"""HttpServer in-process with fakes: durable webhook delegation and auth, admin invocation.

The real process is covered by test_http.py; here the durable engine and the admin hook are
fakes, so the server's own wiring is checked without a durable app.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest
from aiohttp import web

from selfhost.functions import FunctionInfo
from selfhost.http.server import HttpServer
from selfhost.keys import HostKeys
from tests.support.trigger_fakes import FakeInvoker

pytestmark = pytest.mark.runtime

KEYS = HostKeys(master="M", function_keys={"default": "F"}, system_keys={"durabletask_extension": "S"})


class FakeDurable:
    async def handle_webhook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        if subpath == "explode":
            raise RuntimeError("engine bug with secret detail")
        return web.json_response({"subpath": subpath, "method": request.method, "body": await request.text()})


TIMER = {"direction": "IN", "type": "timerTrigger", "name": "timer"}
TICK = FunctionInfo("tick", "timerTrigger", TIMER, (TIMER,), lambda timer: None, False, disabled=True)


def serve(
    scenario: Callable[[httpx.AsyncClient], Awaitable[None]],
    admin_invoke: Callable[[FunctionInfo, str | None], Awaitable[None]] | None = None,
) -> None:
    invoker = FakeInvoker()  # no user function may run here: webhooks and admin are faked

    async def main() -> None:
        server = HttpServer(
            functions=[TICK],
            keys=KEYS,
            invoker=invoker,
            port=0,
            durable=FakeDurable(),
            admin_invoke=admin_invoke,
        )
        await server.start()
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}") as client:
                await scenario(client)
        finally:
            await server.stop()

    asyncio.run(main())
    assert invoker.calls == [], "no user function should run here"


def test_webhook_delegates_with_the_subpath_after_auth() -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        r = await c.post(
            "/runtime/webhooks/durabletask/instances/abc/raiseEvent/go", params={"code": "S"}, content=b"{}"
        )
        assert r.json() == {"subpath": "instances/abc/raiseEvent/go", "method": "POST", "body": "{}"}
        r = await c.get("/runtime/webhooks/durabletask/instances/", headers={"x-functions-key": "M"})
        assert r.json()["subpath"] == "instances/"
        assert (
            await c.get("/runtime/webhooks/durabletask/instances/abc", params={"code": "F"})
        ).status_code == 401

    serve(scenario)


def test_rpc_route_takes_the_key_in_the_path() -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        r = await c.delete("/runtime/rpc/S/durabletask/instances/abc")
        assert r.json() == {"subpath": "instances/abc", "method": "DELETE", "body": ""}
        assert (
            await c.get("/runtime/rpc/M/durabletask/instances/abc")
        ).status_code == 401  # only the system key
        assert (await c.get("/runtime/rpc/F/durabletask/instances/abc")).status_code == 401

    serve(scenario)


def test_engine_failure_is_a_bare_500() -> None:
    async def scenario(c: httpx.AsyncClient) -> None:
        r = await c.get("/runtime/webhooks/durabletask/explode", params={"code": "S"})
        assert (r.status_code, r.content) == (500, b"")

    serve(scenario)


def test_admin_invoke_runs_the_hook_in_the_background() -> None:
    ran: list[tuple[str, str | None]] = []
    done = asyncio.Event()

    def hook(fn: FunctionInfo, text: str | None) -> Awaitable[None]:
        if text == "refuse":
            raise ValueError("cannot do that")

        async def run() -> None:
            ran.append((fn.name, text))
            done.set()

        return run()

    async def scenario(c: httpx.AsyncClient) -> None:
        master = {"x-functions-key": "M"}
        # A disabled function can still be run by the admin API.
        assert (
            await c.post("/admin/functions/TICK", json={"input": "hi"}, headers=master)
        ).status_code == 202
        await asyncio.wait_for(done.wait(), 5)
        assert ran == [("tick", "hi")]
        done.clear()
        assert (
            await c.post("/admin/functions/tick", json={"input": {"a": 1}}, headers=master)
        ).status_code == 202
        await asyncio.wait_for(done.wait(), 5)
        assert ran[-1] == ("tick", '{"a": 1}')
        refused = await c.post("/admin/functions/tick", json={"input": "refuse"}, headers=master)
        assert (refused.status_code, refused.json()) == (400, {"error": "cannot do that"})
        assert (await c.post("/admin/functions/tick", content=b"not json", headers=master)).status_code == 400
        assert (
            await c.post("/admin/functions/tick", json={"input": "x"}, headers={"x-functions-key": "F"})
        ).status_code == 401

    serve(scenario, admin_invoke=hook)
