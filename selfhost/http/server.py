"""The runtime's HTTP front door: user HTTP functions, the admin API and the durable webhooks.

An aiohttp application bound to 127.0.0.1 only. Routes, in the order aiohttp tries them:
`/admin/host/ping` (anonymous), `/admin/host/status`, `POST /admin/functions/{name}` and the
function keys API `/admin/host/functionkeys[/{name}]` (`selfhost.http.admin_keys`) (master
key), `/runtime/webhooks/durabletask/{tail}` (durabletask_extension system key or master key,
from `x-functions-key` or `code`), `/runtime/rpc/{key}/durabletask/{tail}` (the SDK's
`rpcBaseUrl`: it appends paths and cannot add a `code`, so the key rides in the path), and
everything else through the user route table (`selfhost.http.routing`). Behaviour follows
functions-host-facts.md §1–§2: 404 for unknown paths and wrong methods, 401 with an empty body
for a missing or wrong key, 413 over the body limit, 500 with an empty body on an unhandled
exception (the traceback goes to the log, never to the client), 404 for a disabled function
unless the master key is presented. Keys are compared as bytes, so a key header holding bytes
that are not UTF-8 is just a wrong key (401). A user function sees `req.url` built on the
configured public base (PUBLIC_BASE_URL, else http://127.0.0.1:<port>), not on the Host
header, and caller identity headers as App Service Authentication sets them
(`selfhost.http.principal`): the client's own `X-MS-CLIENT-PRINCIPAL*` headers are removed.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol
from urllib.parse import urlsplit

from aiohttp import web
from multidict import CIMultiDict

from selfhost.functions import HTTP_OUTPUT, FunctionInfo, InvocationResult, Invoker
from selfhost.http.admin_keys import KeysApi
from selfhost.http.auth import authorize_function, authorize_system, presented_key
from selfhost.http.convert import UnsupportedResponseError, build_http_request, to_response_parts
from selfhost.http.jsonbody import parse_json_body
from selfhost.http.principal import forwarded_headers, principal_for
from selfhost.http.routes import RouteTable, build_route_table
from selfhost.http.routing import split_path
from selfhost.keys import DURABLE_SYSTEM_KEY, HostKeys
from selfhost.keystore import KeyStore

__all__ = ["AdminInvoke", "DEFAULT_MAX_BODY_BYTES", "HttpServer", "WebhookHandler", "max_body_bytes_from_env"]

log = logging.getLogger(__name__)

LISTEN_HOST = "127.0.0.1"
# Kestrel's MaxRequestBodySize in the Functions host; FUNCTIONS_REQUEST_BODY_SIZE_LIMIT overrides it.
DEFAULT_MAX_BODY_BYTES = 104_857_600


class WebhookHandler(Protocol):
    """What the durable engine offers the server (`selfhost.durable.host.DurableHost`)."""

    async def handle_webhook(self, request: web.Request, subpath: str) -> web.StreamResponse: ...


# Runs a non-HTTP function for `POST /admin/functions/{name}` with the body's "input". Raises
# ValueError *before* returning the awaitable when the function cannot be run this way (400).
AdminInvoke = Callable[[FunctionInfo, str | None], Awaitable[None]]


def max_body_bytes_from_env(environ: dict[str, str] | None = None) -> int:
    env = environ if environ is not None else os.environ
    raw = env.get("FUNCTIONS_REQUEST_BODY_SIZE_LIMIT", "").strip()
    # isdigit() alone accepts "²", on which int() raises
    return int(raw) if raw.isascii() and raw.isdecimal() else DEFAULT_MAX_BODY_BYTES


class HttpServer:
    def __init__(
        self,
        *,
        functions: Sequence[FunctionInfo],
        keys: HostKeys | KeyStore,
        invoker: Invoker,
        route_prefix: str = "api",
        port: int = 7071,
        host_id: str = "selfhost",
        durable: WebhookHandler | None = None,
        admin_invoke: AdminInvoke | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        public_base_url: str | None = None,
    ) -> None:
        self._functions = list(functions)
        # A bare HostKeys (tests) becomes a store whose key changes stay in memory.
        self.key_store = keys if isinstance(keys, KeyStore) else KeyStore(keys)
        self._public_base_url = public_base_url
        self._invoker = invoker
        self._port = port
        self._host_id = host_id
        self._durable = durable
        self._admin_invoke = admin_invoke
        self._max_body = max_body_bytes
        self.routes: RouteTable = build_route_table(self._functions, route_prefix)
        self._runner: web.AppRunner | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.app = self._build_app()

    @property
    def port(self) -> int:
        """The bound port (useful when constructed with port 0)."""
        if self._runner is not None and self._runner.addresses:
            return int(self._runner.addresses[0][1])
        return self._port

    @property
    def _keys(self) -> HostKeys:
        return self.key_store.current

    def public_base(self) -> str:
        """PUBLIC_BASE_URL when configured, else this server's own loopback address."""
        return self._public_base_url or f"http://{LISTEN_HOST}:{self.port}"

    def _public_origin(self) -> str:
        parts = urlsplit(self.public_base())
        return f"{parts.scheme}://{parts.netloc}"

    def _build_app(self) -> web.Application:
        # aiohttp enforces the limit while reading and answers 413 itself.
        app = web.Application(client_max_size=self._max_body)
        app.router.add_route("GET", "/admin/host/ping", self._ping)
        app.router.add_route("POST", "/admin/host/ping", self._ping)
        app.router.add_route("GET", "/admin/host/status", self._status)
        app.router.add_route("POST", "/admin/functions/{name}", self._admin_function)
        KeysApi(self.key_store, self.public_base).register(app.router)
        app.router.add_route("*", "/runtime/webhooks/durabletask/{tail:[\\s\\S]*}", self._durable_webhook)
        app.router.add_route("*", "/runtime/rpc/{token}/durabletask/{tail:[\\s\\S]*}", self._durable_rpc)
        app.router.add_route("*", "/{tail:[\\s\\S]*}", self._user_function)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=10.0)
        await self._runner.setup()
        await web.TCPSite(self._runner, LISTEN_HOST, self._port).start()
        log.info("HTTP server listening on http://%s:%d", LISTEN_HOST, self.port)

    async def stop(self) -> None:
        for task in list(self._background):
            task.cancel()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # --- built-in routes -------------------------------------------------------------------

    async def _ping(self, request: web.Request) -> web.StreamResponse:
        return web.Response(status=200)

    async def _status(self, request: web.Request) -> web.StreamResponse:
        if not self._keys.is_master(presented_key(request.headers, request.query)):
            return web.Response(status=401)
        return web.json_response(
            {"id": self._host_id, "state": "Running", "functions": [fn.name for fn in self._functions]}
        )

    async def _admin_function(self, request: web.Request) -> web.StreamResponse:
        if not self._keys.is_master(presented_key(request.headers, request.query)):
            return web.Response(status=401)
        name = request.match_info["name"]
        fn = next((f for f in self._functions if f.name.casefold() == name.casefold()), None)
        if fn is None:
            return web.Response(status=404)
        try:
            payload = parse_json_body(await request.read())
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            return web.json_response({"error": 'body must be JSON like {"input": "..."}'}, status=400)
        raw_input = payload.get("input")
        text = raw_input if raw_input is None or isinstance(raw_input, str) else json.dumps(raw_input)
        if self._admin_invoke is None:
            return web.json_response(
                {"error": "this runtime cannot invoke functions from the admin API"}, status=400
            )
        try:
            awaitable = self._admin_invoke(fn, text)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        self._spawn(awaitable, f"admin invoke of {fn.name}")
        return web.Response(status=202)

    def _spawn(self, awaitable: Awaitable[None], what: str) -> None:
        async def run() -> None:
            await awaitable

        task = asyncio.ensure_future(run())
        self._background.add(task)

        def done(t: asyncio.Task[None]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("%s failed", what, exc_info=t.exception())

        task.add_done_callback(done)

    async def _durable_webhook(self, request: web.Request) -> web.StreamResponse:
        if not authorize_system(
            DURABLE_SYSTEM_KEY, presented_key(request.headers, request.query), self._keys
        ):
            return web.Response(status=401)
        return await self._delegate_durable(request, request.match_info["tail"])

    async def _durable_rpc(self, request: web.Request) -> web.StreamResponse:
        if not self._keys.is_system_key(request.match_info["token"], DURABLE_SYSTEM_KEY):
            return web.Response(status=401)
        return await self._delegate_durable(request, request.match_info["tail"])

    async def _delegate_durable(self, request: web.Request, tail: str) -> web.StreamResponse:
        if self._durable is None:
            return web.Response(status=404)
        try:
            return await self._durable.handle_webhook(request, tail)
        except web.HTTPException:
            raise
        except Exception:  # noqa: BLE001 - any engine failure is a 500, logged with its traceback
            log.exception("Durable management API call %s %s failed", request.method, request.path)
            return web.Response(status=500)

    # --- user HTTP functions ---------------------------------------------------------------

    async def _user_function(self, request: web.Request) -> web.StreamResponse:
        found = self.routes.match(request.method, split_path(request.rel_url.raw_path))
        if found is None:
            return web.Response(status=404)
        route, route_values = found
        fn = route.function
        keys = self._keys  # one snapshot for the whole request
        key = presented_key(request.headers, request.query)
        if fn.disabled and not keys.is_master(key):
            return web.Response(status=404)
        if not authorize_function(route.auth_level, key, keys):
            return web.Response(status=401)
        if (request.content_length or 0) > self._max_body:
            return web.Response(status=413)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.Response(status=413)
        http_request = build_http_request(
            method=request.method,
            url=self._public_origin() + _path_and_query(request),
            headers=forwarded_headers(request.headers.items(), principal_for(keys.identify(key))),
            query=request.query.items(),
            route_params=route_values,
            body=body,
        )
        binding_data: dict[str, Any] = {**http_request.params, **route_values}
        try:
            result = await self._invoker.invoke(
                fn, {str(fn.trigger["name"]): http_request}, binding_data=binding_data
            )
            parts = to_response_parts(_http_output(fn, result))
        except UnsupportedResponseError as exc:
            log.error("Function '%s' returned an unusable HTTP response: %s", fn.name, exc)
            return web.Response(status=500)
        except Exception:  # noqa: BLE001 - the invoker has logged the traceback; the client gets a bare 500
            return web.Response(status=500)
        return web.Response(status=parts.status, headers=CIMultiDict(parts.headers), body=parts.body)


def _path_and_query(request: web.Request) -> str:
    """The request target as sent (still percent-encoded), origin-form even for an absolute-form target."""
    rel = request.rel_url
    return rel.raw_path + (f"?{rel.raw_query_string}" if rel.raw_query_string else "")


def _http_output(fn: FunctionInfo, result: InvocationResult) -> Any:
    """The value of the function's `http` output binding (`$return` unless named otherwise)."""
    for b in fn.bindings_of(HTTP_OUTPUT, "OUT"):
        name = str(b.get("name"))
        if name != "$return":
            return result.outputs.get(name)
    return result.return_value
