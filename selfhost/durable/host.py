"""Entry point of the durable engine for the rest of the runtime.

Builds the SQLite store in the state folder, the engine and the management API, and produces
the `durableClient` binding JSON the SDK's client expects (durable-protocol.md §1.3). The
management URLs in both carry the durabletask_extension system key and start with the public
base the runtime was configured with (`public_base`, called when a URL is built because the
port is known only once the HTTP server listens).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from selfhost.config import DurableConfig
from selfhost.durable.api import LOCAL_BASE, ManagementApi
from selfhost.durable.engine import Engine
from selfhost.durable.sqlite_store import SqliteStore
from selfhost.durable.store import Store
from selfhost.functions import (
    ACTIVITY_TRIGGER,
    ENTITY_TRIGGER,
    ORCHESTRATION_TRIGGER,
    Clock,
    FunctionInfo,
    Invoker,
)


def durable_index(functions: Sequence[FunctionInfo]) -> dict[str, FunctionInfo]:
    """Durable name -> function; the Python name also resolves (call_activity(fn) sends it).

    Entities are keyed "@" + lowercase entity name (names are case-insensitive, as EntityId
    makes them), so they never collide with an orchestrator or activity of the same name."""
    index: dict[str, FunctionInfo] = {}
    for fn in functions:
        if fn.trigger_type == ENTITY_TRIGGER and not fn.disabled:
            name = fn.trigger.get("entityName") or fn.durable_name or fn.name
            index["@" + str(name).lower()] = fn
        if fn.trigger_type not in (ORCHESTRATION_TRIGGER, ACTIVITY_TRIGGER) or fn.disabled:
            continue
        index[fn.durable_name or fn.name] = fn
    for fn in functions:
        if (
            fn.trigger_type in (ORCHESTRATION_TRIGGER, ACTIVITY_TRIGGER)
            and not fn.disabled
            and fn.python_name
        ):
            index.setdefault(fn.python_name, fn)
    return index


class DurableHost:
    """Runs orchestrations, activities, timers and the management API over one state folder."""

    def __init__(
        self,
        *,
        functions: Sequence[FunctionInfo],
        invoker: Invoker,
        state_dir: Path,
        config: DurableConfig,
        clock: Clock,
        store: Store | None = None,
        public_base: Callable[[], str] = lambda: LOCAL_BASE,
        system_key: Callable[[], str | None] = lambda: None,
    ) -> None:
        self.config = config
        self.store: Store = store or SqliteStore(state_dir / "durable" / f"{config.hub_name}.sqlite3")
        self.engine = Engine(
            store=self.store,
            functions=durable_index(functions),
            invoker=invoker,
            clock=clock,
            max_activities=config.max_concurrent_activities,
            max_orchestrations=config.max_concurrent_orchestrations,
        )
        self.api = ManagementApi(self.engine, config.hub_name, public_base=public_base, code=system_key)

    async def start(self) -> None:
        await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()
        self.store.close()

    def client_binding(self, *, public_base_url: str, rpc_base_url: str, code: str | None) -> str:
        base = public_base_url.rstrip("/")
        key = f"code={quote(code)}" if code else ""
        urls = self.api.management_urls(base, "INSTANCEID", code)
        return json.dumps(
            {
                "taskHubName": self.config.hub_name,
                "connectionName": None,
                "creationUrls": {
                    "createNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]?{key}",
                    "createAndWaitOnNewInstancePostUri": f"{base}/orchestrators/{{functionName}}[/{{instanceId}}]"
                    f"?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{key}",
                },
                "managementUrls": urls,
                "baseUrl": base,
                "requiredQueryStringParameters": key,
                "rpcBaseUrl": rpc_base_url,
                "httpBaseUrl": None,
            }
        )

    async def handle_webhook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        return await self.api.handle(request, subpath)
