"""The Durable HTTP management API (`/runtime/webhooks/durabletask/...`), as the SDK client and
people call it (durable-protocol.md §4): start, status, list, raise event, terminate, suspend,
resume, restart, rewind, purge. Payload shapes and status codes follow the extension.

Management URLs (the 202 `Location` and the check-status payload) start with the configured
public base and carry the extension's system key (`durabletask_extension`), as the real
extension's do: never the caller's own key (it may be the master key) and never the request's
Host header. Bad input (a `top` outside 1..1000, a date that is not ISO 8601 or out of range, a
body that is not UTF-8 JSON, an undecodable continuation token) is a 400 `{"Message": ...}`
saying what is wrong, never a 500.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from aiohttp import web

from selfhost.durable import entities as ent
from selfhost.durable import history as h
from selfhost.durable.engine import Engine, InstanceExists, UnknownEntity, UnknownOrchestrator
from selfhost.durable.episode import rewind_blocker, unknown_function
from selfhost.durable.history import EventType, OrchestrationStatus
from selfhost.durable.store import TERMINAL_STATUSES, Instance, InstanceQuery
from selfhost.http.jsonbody import parse_json_body

RUNNING_LIKE = {"Running", "Pending", "ContinuedAsNew", "Suspended"}
WEBHOOK_PATH = "/runtime/webhooks/durabletask"
# Largest `top` (page size) of a listing. The SDK never sends `top`; a person paging by hand
# gets up to 1000 instances a page (one page is built in memory, a few MB of JSON at most),
# and anything larger is refused with a 400 rather than clamped, so the caller learns the limit.
MAX_TOP = 1000
LOCAL_BASE = "http://127.0.0.1:7071"


class BadInput(ValueError):
    """A query value, header or body the API cannot use; the message is the 400 answer."""


def _bad_request(message: str) -> web.Response:
    return web.json_response({"Message": message}, status=400)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.strip().lower() == "true"


def _time(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_query_time(request: web.Request, name: str) -> dt.datetime | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        parsed = h.parse_time(value)
        parsed.astimezone(dt.UTC)  # "0001-01-01T00:00:00+14:00" parses, then overflows here
    except (ValueError, OverflowError):
        raise BadInput(f"{name} must be an ISO 8601 date/time such as 2025-01-31T00:00:00Z") from None
    return parsed


def _top(request: web.Request) -> int | None:
    top = request.query.get("top")
    if top is None:
        return None
    text = top.strip()
    # isdecimal() alone accepts non-ASCII digits; a length cap keeps int() cheap.
    if not (text.isascii() and text.isdecimal() and len(text) <= 4 and 1 <= int(text) <= MAX_TOP):
        raise BadInput(f"top must be a whole number from 1 to {MAX_TOP}")
    return int(text)


def _text_header(request: web.Request, name: str) -> str | None:
    value = request.headers.get(name)
    if not value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # undecodable bytes, kept by aiohttp as lone surrogates
        raise BadInput(f"the {name} header is not UTF-8 text") from None
    return value


class ManagementApi:
    """`public_base` gives the runtime's public base URL (PUBLIC_BASE_URL, else the loopback
    address and port); `code` the durabletask_extension system key (both are read when a URL is
    built: the port is known only once the server listens, and keys.json may change)."""

    def __init__(
        self,
        engine: Engine,
        hub_name: str,
        *,
        public_base: Callable[[], str] = lambda: LOCAL_BASE,
        code: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.engine = engine
        self.store = engine.store
        self.hub = hub_name
        self._public_base = public_base
        self._code = code

    @property
    def webhook_base(self) -> str:
        return self._public_base().rstrip("/") + WEBHOOK_PATH

    # -- URLs --------------------------------------------------------------------------------

    def management_urls(self, base: str, instance_id: str, code: str | None) -> dict[str, str]:
        iid = quote(instance_id, safe="")
        suffix = f"taskHub={quote(self.hub)}&connection=Storage" + (f"&code={quote(code)}" if code else "")
        root = f"{base}/instances/{iid}"
        return {
            "id": instance_id,
            "statusQueryGetUri": f"{root}?{suffix}",
            "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{suffix}",
            "terminatePostUri": f"{root}/terminate?reason={{text}}&{suffix}",
            "rewindPostUri": f"{root}/rewind?reason={{text}}&{suffix}",
            "purgeHistoryDeleteUri": f"{root}?{suffix}",
            "restartPostUri": f"{root}/restart?{suffix}",
            "suspendPostUri": f"{root}/suspend?reason={{text}}&{suffix}",
            "resumePostUri": f"{root}/resume?reason={{text}}&{suffix}",
        }

    def _accepted(self, instance_id: str) -> web.Response:
        urls = self.management_urls(self.webhook_base, instance_id, self._code())
        urls.pop("rewindPostUri")  # the extension's own 202 omits it (§4)
        return web.json_response(
            urls, status=202, headers={"Location": urls["statusQueryGetUri"], "Retry-After": "10"}
        )

    # -- dispatch ----------------------------------------------------------------------------

    async def handle(self, request: web.Request, subpath: str) -> web.StreamResponse:
        try:
            return await self._route(request, subpath)
        except BadInput as exc:
            return _bad_request(str(exc))

    async def _route(self, request: web.Request, subpath: str) -> web.StreamResponse:
        parts = [p for p in subpath.split("/") if p]
        method = request.method.upper()
        if len(parts) in (2, 3) and parts[0] == "orchestrators" and method == "POST":
            return await self._start(request, parts[1], parts[2] if len(parts) == 3 else None)
        if parts[:1] == ["instances"]:
            if len(parts) == 1:
                if method == "GET":
                    return self._list(request)
                if method == "DELETE":
                    return self._purge_by(request)
            elif len(parts) == 2:
                if method == "GET":
                    return self._status(request, parts[1])
                if method == "DELETE":
                    return self._purge_one(parts[1])
            elif method == "POST" and parts[2] in ("terminate", "suspend", "resume"):
                return self._control(request, parts[1], parts[2])
            elif method == "POST" and parts[2] == "raiseEvent" and len(parts) == 4:
                return await self._raise(request, parts[1], parts[3])
            elif method == "POST" and parts[2] == "restart":
                return self._restart(request, parts[1])
            elif method == "POST" and parts[2] == "rewind":
                return self._rewind(parts[1], request.query.get("reason"))
        if parts[:1] == ["entities"] and len(parts) == 3:
            if method == "GET":
                return self._read_entity(parts[1], parts[2])
            if method in ("POST", "DELETE"):
                op = "delete" if method == "DELETE" else request.query.get("op", "")
                return await self._signal_entity(request, parts[1], parts[2], op)
        if parts[:1] == ["entities"] and len(parts) == 2 and method == "GET":
            return web.json_response(
                {"Message": "Listing entities is not supported by this runtime."}, status=501
            )
        raise web.HTTPNotFound()

    # -- operations --------------------------------------------------------------------------

    async def _start(self, request: web.Request, name: str, instance_id: str | None) -> web.Response:
        if instance_id is not None and ent.is_entity_id(instance_id):
            return web.json_response(
                {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": "Orchestration instance ids must not start with @.",
                },
                status=400,
            )
        try:
            value = parse_json_body(await request.read())
        except ValueError as exc:
            return _bad_request(f"The request body is not valid JSON: {exc}.")
        try:
            inst = self.engine.start_new(name, instance_id, None if value is None else json.dumps(value))
        except UnknownOrchestrator:
            known = ", ".join(sorted(self.engine.orchestrators))
            return web.json_response(
                {
                    "Message": "One or more of the arguments submitted is incorrect",
                    "ExceptionMessage": f"The function '{name}' doesn't exist, is disabled, or is not an "
                    f"orchestrator function. Additional info: the following are the known orchestrator "
                    f"functions: {known}",
                },
                status=400,
            )
        except InstanceExists:
            return web.json_response(
                {"Message": f"An instance with ID '{instance_id}' already exists and is still running."},
                status=409,
            )
        return self._accepted(inst.instance_id)

    def status_payload(
        self, inst: Instance, *, show_input: bool, history: list[dict[str, Any]] | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "name": inst.name,
            "instanceId": inst.instance_id,
            "runtimeStatus": inst.status,
            "input": h.json_value(inst.input) if show_input else None,
            "customStatus": h.json_value(inst.custom_status),
            "output": h.json_value(inst.output),
            "createdTime": _time(inst.created),
            "lastUpdatedTime": _time(inst.updated),
        }
        if history is not None:
            payload["historyEvents"] = history
        return payload

    def _status(self, request: web.Request, instance_id: str) -> web.Response:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return web.Response(status=404)  # empty body: the SDK then returns a falsy status
        show_input = _flag(request, "showInput", True)
        events = None
        if _flag(request, "showHistory", False):
            raw = [json.loads(e) for e in self.store.get_history(instance_id)]
            events = public_history(raw, _flag(request, "showHistoryOutput", False), show_input)
        payload = self.status_payload(inst, show_input=show_input, history=events)
        if inst.status in RUNNING_LIKE:
            location = self.management_urls(self.webhook_base, instance_id, self._code())["statusQueryGetUri"]
            return web.json_response(payload, status=202, headers={"Location": location, "Retry-After": "5"})
        return web.json_response(payload, status=200)

    def _query(self, request: web.Request, *, paged: bool) -> InstanceQuery:
        statuses = request.query.get("runtimeStatus")
        top = _top(request)
        return InstanceQuery(
            created_from=_parse_query_time(request, "createdTimeFrom"),
            created_to=_parse_query_time(request, "createdTimeTo"),
            statuses=frozenset(s.strip() for s in statuses.split(",") if s.strip()) if statuses else None,
            prefix=request.query.get("instanceIdPrefix") or None,
            top=top if paged else None,
            continuation=_text_header(request, "x-ms-continuation-token") if paged else None,
        )

    def _list(self, request: web.Request) -> web.Response:
        found, token = self.store.query_instances(self._query(request, paged=True))
        found = [i for i in found if not ent.is_entity_id(i.instance_id)]  # as the extension lists
        show_input = _flag(request, "showInput", False)
        body = [self.status_payload(i, show_input=show_input, history=None) for i in found]
        headers = {"x-ms-continuation-token": token} if token else {}
        return web.json_response(body, headers=headers)

    def _purge_one(self, instance_id: str) -> web.Response:
        inst = self.store.get_instance(instance_id)
        if inst is None or inst.status not in TERMINAL_STATUSES:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": self.store.purge([instance_id])})

    def _purge_by(self, request: web.Request) -> web.Response:
        if not request.query.get("createdTimeFrom"):
            return web.json_response(
                {"Message": "createdTimeFrom is required to purge by filter."}, status=400
            )
        query = self._query(request, paged=False)
        statuses = (query.statuses or TERMINAL_STATUSES) & TERMINAL_STATUSES
        found, _ = self.store.query_instances(
            InstanceQuery(query.created_from, query.created_to, frozenset(statuses), query.prefix)
        )
        found = [i for i in found if not ent.is_entity_id(i.instance_id)]
        if not found:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": self.store.purge([i.instance_id for i in found])})

    def _control(self, request: web.Request, instance_id: str, kind: str) -> web.Response:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return web.Response(status=404)
        if inst.status in TERMINAL_STATUSES:
            return web.Response(status=410)
        self.engine.control(instance_id, kind, request.query.get("reason"))
        return web.Response(status=202)

    async def _raise(self, request: web.Request, instance_id: str, name: str) -> web.Response:
        if "json" not in request.headers.get("Content-Type", "application/json").lower():
            return web.json_response(
                {"Message": "Only application/json request content is supported"}, status=400
            )
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return web.Response(status=404)
        if inst.status in TERMINAL_STATUSES:
            return web.Response(status=410)
        try:
            value = parse_json_body(await request.read())
        except ValueError as exc:
            return _bad_request(f"The event data is not valid JSON: {exc}.")
        self.engine.raise_event(instance_id, name, json.dumps(value))
        return web.Response(status=202)

    async def _signal_entity(self, request: web.Request, name: str, key: str, op: str) -> web.Response:
        body = await request.read()
        try:
            input_text = ent.client_operation_input(body, request.headers.get("Content-Type", ""))
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            return _bad_request(f"Could not parse JSON content: {exc}")
        try:
            self.engine.signal_entity(name, key, op, input_text)
        except UnknownEntity:
            return web.json_response(
                {"Message": unknown_function("entity", name, self.engine.entities)}, status=400
            )
        return web.Response(status=202)

    def _read_entity(self, name: str, key: str) -> web.Response:
        status = self.engine.read_entity(name, key)
        if not status.exists:
            return web.Response(status=404)  # empty body, as the extension answers
        return web.Response(status=200, text=status.state or "null", content_type="application/json")

    def _restart(self, request: web.Request, instance_id: str) -> web.Response:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return web.Response(status=404)
        new_id = None if _flag(request, "restartWithNewInstanceId", True) else instance_id
        try:
            started = self.engine.start_new(inst.name, new_id, inst.input)
        except InstanceExists:
            return web.Response(status=410)
        return self._accepted(started.instance_id)

    def _rewind(self, instance_id: str, reason: str | None) -> web.Response:
        inst = self.store.get_instance(instance_id)
        if inst is None:
            return web.Response(status=404)
        if inst.status != "Failed":
            return web.Response(status=410)
        blocker = rewind_blocker(inst)
        if blocker is not None:
            return web.json_response(blocker, status=400)  # a JSON string: the SDK raises it as is
        self.engine.control(instance_id, "rewind", reason)
        return web.Response(status=202)


_FOLDED = {EventType.TaskScheduled, EventType.SubOrchestrationInstanceCreated}
_HIDDEN = {EventType.OrchestratorStarted, EventType.OrchestratorCompleted}
_ID_KEYS = frozenset({"EventId", "IsPlayed", "TaskScheduledId", "TimerId"})


def public_history(events: list[dict[str, Any]], show_output: bool, show_input: bool) -> list[dict[str, Any]]:
    """History as the extension shows it with showHistory=true (§4)."""
    scheduled: dict[int, dict[str, Any]] = {}
    out: list[dict[str, Any]] = []
    for ev in events:
        kind = EventType(ev["EventType"])
        if kind in _HIDDEN:
            continue
        if kind in _FOLDED:
            scheduled[ev["EventId"]] = ev
            continue
        item = {k: v for k, v in ev.items() if k not in _ID_KEYS}
        item["EventType"] = kind.name
        if kind == EventType.ExecutionStarted:
            item["FunctionName"] = item.pop("Name", None)
            if not show_input:
                item.pop("Input", None)
        src = scheduled.pop(ev.get("TaskScheduledId", -1), None)
        if src is not None:
            item["FunctionName"] = src.get("Name")
            item["ScheduledTime"] = src.get("Timestamp")
            if show_input:
                item["Input"] = src.get("Input")
        if "Result" in item:
            if show_output:
                item["Result"] = h.json_value(item["Result"])
            else:
                item.pop("Result")
        if "OrchestrationStatus" in item:
            item["OrchestrationStatus"] = OrchestrationStatus(item["OrchestrationStatus"]).name
        out.append(item)
    for ev in scheduled.values():  # still pending
        out.append({"EventType": EventType(ev["EventType"]).name, "FunctionName": ev.get("Name"),
                    "Timestamp": ev.get("Timestamp")})  # fmt: skip
    return out
