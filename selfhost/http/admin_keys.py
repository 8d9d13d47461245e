"""The host keys API for function keys: `/admin/host/functionkeys[/{name}]` (alias `/admin/host/keys`).

As the host's KeysController does it (functions-host-facts.md §2.3), master key only, else 401
with an empty body:

    GET    /admin/host/functionkeys          {"keys": [{"name", "value"}, ...], "links": [...]}
    GET    /admin/host/functionkeys/{name}   {"name", "value", "links"}; 404 if there is none
    PUT    /admin/host/functionkeys/{name}   body {"name": name, "value": v}: set that value
    POST   /admin/host/functionkeys/{name}   generate a value
    DELETE /admin/host/functionkeys/{name}   204; 404 if there is none

PUT and POST answer 201 (with `Location`) for a new key and 200 for a replaced value, with body
{"name", "value", "links"}. Names and values are checked by `selfhost.keys` (400 naming the
field); a value another key already has is 409. Every change is in keys.json before the answer
and applies to the next request (`selfhost.keystore`). The master and system keys are not
managed here. Links start with the configured public base, never with the Host header.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from selfhost.http.auth import presented_key
from selfhost.http.jsonbody import parse_json_body
from selfhost.keys import key_name_problem
from selfhost.keystore import InvalidKeyChange, KeyConflict, KeyStore

__all__ = ["KeysApi"]

_SCOPES = ("functionkeys", "keys")
MAX_BODY_BYTES = 64 * 1024  # a key document is tiny; refuse to parse megabytes of it


def _error(status: int, code: str, message: str, field: str | None = None) -> web.Response:
    error: dict[str, str] = {"code": code, "message": message}
    if field is not None:
        error["field"] = field
    return web.json_response({"error": error}, status=status)


class KeysApi:
    def __init__(self, store: KeyStore, public_base: Callable[[], str]) -> None:
        self._store = store
        self._public_base = public_base

    def register(self, router: web.UrlDispatcher) -> None:
        for scope in _SCOPES:
            router.add_route("GET", f"/admin/host/{scope}", self._list)
            for method in ("GET", "PUT", "POST", "DELETE"):
                router.add_route(method, f"/admin/host/{scope}/{{name}}", self._one)

    def _href(self, name: str | None = None) -> str:
        base = f"{self._public_base().rstrip('/')}/admin/host/functionkeys"
        return base if name is None else f"{base}/{quote(name, safe='@')}"

    def _key_body(self, name: str, value: str) -> dict[str, Any]:
        return {"name": name, "value": value, "links": [{"rel": "self", "href": self._href(name)}]}

    def _authorized(self, request: web.Request) -> bool:
        return self._store.current.is_master(presented_key(request.headers, request.query))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401)
        keys = self._store.current.function_keys
        return web.json_response(
            {
                "keys": [{"name": n, "value": v} for n, v in keys.items()],
                "links": [{"rel": "self", "href": self._href()}],
            }
        )

    async def _one(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return web.Response(status=401)
        name = request.match_info["name"]
        try:
            if request.method == "GET":
                value = self._store.current.function_keys.get(name)
                if value is None:
                    return web.Response(status=404)
                return web.json_response(self._key_body(name, value))
            if request.method == "DELETE":
                return web.Response(status=204 if self._store.delete_function_key(name) else 404)
            value = await self._put_value(request, name) if request.method == "PUT" else None
            created, stored = self._store.put_function_key(name, value)
        except InvalidKeyChange as exc:
            return _error(400, "invalid_request", str(exc), exc.field)
        except KeyConflict as exc:
            return _error(409, "conflict", str(exc), "value")
        headers = {"Location": self._href(name)} if created else {}
        return web.json_response(
            self._key_body(name, stored), status=201 if created else 200, headers=headers
        )

    async def _put_value(self, request: web.Request, name: str) -> str:
        problem = key_name_problem(name)
        if problem is not None:  # before the body, so the answer names the first problem
            raise InvalidKeyChange(problem, "name")
        raw = await request.read()
        if len(raw) > MAX_BODY_BYTES:
            raise InvalidKeyChange(f"the body must be at most {MAX_BODY_BYTES} bytes", "body")
        try:
            document = parse_json_body(raw)
        except ValueError as exc:
            raise InvalidKeyChange(str(exc), "body") from None
        if not isinstance(document, dict):
            raise InvalidKeyChange('the body must be a JSON object like {"name": ..., "value": ...}', "body")
        if "name" in document and document["name"] != name:
            raise InvalidKeyChange("name must be the key name of the URL", "name")
        value = document.get("value")
        if not isinstance(value, str):
            raise InvalidKeyChange("value must be a string (POST generates one)", "value")
        return value
