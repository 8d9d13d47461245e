"""Entry point of the durable engine for the rest of the runtime (owner: durable engine).

INTERFACE STUB: the HTTP server and the host composition code against exactly this surface.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from selfhost.config import DurableConfig
from selfhost.functions import Clock, FunctionInfo, Invoker


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
    ) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Open the store, recover pending work, start the dispatch loops (on the running loop)."""
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    def client_binding(self, *, public_base_url: str, rpc_base_url: str, code: str | None) -> str:
        """The JSON string passed as the `durableClient` binding value.

        public_base_url: e.g. "http://127.0.0.1:7071/runtime/webhooks/durabletask" (no slash).
        rpc_base_url: where the SDK sends its client calls; must end with "/".
        code: the durabletask_extension system key, appended to management URLs as `code=`.
        """
        raise NotImplementedError

    async def handle_webhook(self, request: web.Request, subpath: str) -> web.StreamResponse:
        """Serve one management API call; `subpath` is what follows ".../durabletask/",
        e.g. "instances/abc" or "orchestrators/name". Auth is checked by the caller."""
        raise NotImplementedError
