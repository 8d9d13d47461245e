"""Composition root of the runtime: `Runtime` wires the parts of one host together, in order.

From an indexed app, its config and keys: one thread pool and one `HostInvoker` bound to the
running loop, the durable engine (only if the app has a durable trigger or client binding),
the HTTP server, then one trigger listener per timer/queue/blob function. `stop()` undoes this
in reverse. The OS-process side (lock, settings, signals, exit codes) is `selfhost.process`.
Every absolute URL handed out (durable management URLs, the client binding, `req.url`) starts
with `public_base()`: PUBLIC_BASE_URL when configured, else http://127.0.0.1:<port>. Nothing
here knows about exports or any particular app.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from selfhost.admin_invoke import make_admin_invoke
from selfhost.config import HostConfig
from selfhost.functions import HTTP_TRIGGER, Clock, SystemClock
from selfhost.http.server import HttpServer, max_body_bytes_from_env
from selfhost.indexing import DURABLE_TRIGGERS, IndexedApp
from selfhost.invoker import HostInvoker
from selfhost.keys import KEYS_FILE, HostKeys
from selfhost.keystore import KeyStore
from selfhost.triggers.base import OutputHandler, TriggerListener
from selfhost.triggers.listeners import LISTENERS, make_output_handlers

__all__ = ["THREAD_PREFIX", "Runtime"]

log = logging.getLogger(__name__)

THREAD_PREFIX = "selfhost-fn"


class Runtime:
    """The running parts of one host; `start()`/`stop()` must be awaited on the host loop."""

    def __init__(
        self,
        config: HostConfig,
        indexed: IndexedApp,
        keys: HostKeys | KeyStore,
        *,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self.indexed = indexed
        self.key_store = keys if isinstance(keys, KeyStore) else KeyStore(keys)
        self.clock: Clock = clock or SystemClock()
        threads = os.environ.get("PYTHON_THREADPOOL_THREAD_COUNT", "").strip()
        self.executor = ThreadPoolExecutor(
            max_workers=int(threads) if threads.isdigit() and int(threads) > 0 else None,
            thread_name_prefix=THREAD_PREFIX,
        )
        self.invoker: HostInvoker | None = None
        self.durable: Any = None  # selfhost.durable.host.DurableHost, imported only when needed
        self.http: HttpServer | None = None
        self.listeners: dict[str, TriggerListener] = {}
        self.output_handlers: Mapping[str, OutputHandler] = {}

    async def start(self) -> None:
        functions = self.indexed.functions
        self.output_handlers = make_output_handlers(self.config)
        self.invoker = HostInvoker(
            executor=self.executor,
            output_handlers=self.output_handlers,
            client_binding_provider=self._client_binding if self.indexed.uses_durable else None,
            function_timeout_s=self.config.function_timeout_s,
            function_directory=str(self.config.app_root),
            loop=asyncio.get_running_loop(),
        )
        if self.indexed.uses_durable:
            await self._start_durable()
        self.listeners = self._make_listeners()
        self.http = HttpServer(
            functions=functions,
            keys=self.key_store,
            invoker=self.invoker,
            route_prefix=self.config.route_prefix,
            port=self.config.port,
            host_id=self.config.host_id,
            durable=self.durable,
            admin_invoke=make_admin_invoke(self.invoker, self.listeners),
            max_body_bytes=max_body_bytes_from_env(),
            public_base_url=self.config.public_base_url,
        )
        await self.http.start()
        for name, listener in self.listeners.items():
            try:
                await listener.start()
            except Exception:  # noqa: BLE001 - one bad trigger (e.g. storage down) must not stop the host
                log.exception(
                    "The listener for function '%s' failed to start; the function will not run", name
                )

    async def stop(self) -> None:
        for name, listener in reversed(list(self.listeners.items())):
            try:
                await listener.stop()
            except Exception:  # noqa: BLE001 - keep stopping the other parts
                log.exception("Stopping the listener for '%s' failed", name)
        if self.http is not None:
            await self.http.stop()
        if self.durable is not None:
            try:
                await self.durable.stop()
            except Exception:  # noqa: BLE001 - keep shutting down
                log.exception("Stopping the durable engine failed")
        # The handlers share one set of storage clients: closing through one closes them all.
        closer = next(
            (getattr(h, "aclose", None) for h in self.output_handlers.values() if hasattr(h, "aclose")), None
        )
        if closer is not None:
            try:
                await closer()
            except Exception:  # noqa: BLE001 - keep shutting down
                log.exception("Closing the output binding clients failed")
        await _close_durable_sdk_session()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def _start_durable(self) -> None:
        try:
            from selfhost.durable.host import DurableHost

            durable = DurableHost(
                functions=self.indexed.functions,
                invoker=self._require_invoker(),
                state_dir=self.config.state_dir,
                config=self.config.durable,
                clock=self.clock,
                public_base=self.public_base,
                system_key=lambda: self.keys.durable_key,
            )
            await durable.start()
        except NotImplementedError:
            log.error(
                "The app has durable functions but the durable engine is not implemented yet; they will not run"
            )
            return
        self.durable = durable

    @property
    def keys(self) -> HostKeys:
        """The keys in use now (they change through the admin API or an edit of keys.json)."""
        return self.key_store.current

    def public_base(self) -> str:
        if self.config.public_base_url:
            return self.config.public_base_url
        return f"http://127.0.0.1:{self.http.port if self.http else self.config.port}"

    def _require_invoker(self) -> HostInvoker:
        assert self.invoker is not None, "start() creates the invoker first"
        return self.invoker

    def _client_binding(self) -> str:
        if self.durable is None or self.http is None:
            raise RuntimeError(
                "the durable engine is not running, so durable client bindings are unavailable"
            )
        # The SDK calls rpcBaseUrl from inside this process, so it stays on the loopback address;
        # the management URLs it hands to people start with the public base.
        key = self.keys.durable_key
        binding: str = self.durable.client_binding(
            public_base_url=f"{self.public_base()}/runtime/webhooks/durabletask",
            rpc_base_url=f"http://127.0.0.1:{self.http.port}/runtime/rpc/{key}/durabletask/",
            code=key,
        )
        return binding

    def _make_listeners(self) -> dict[str, TriggerListener]:
        out: dict[str, TriggerListener] = {}
        for fn in self.indexed.functions:
            if fn.trigger_type == HTTP_TRIGGER or fn.trigger_type in DURABLE_TRIGGERS or fn.disabled:
                continue
            cls = LISTENERS.get(fn.trigger_type)
            if cls is None:
                log.warning(
                    "No listener for '%s' triggers: '%s' runs only via the admin API",
                    fn.trigger_type,
                    fn.name,
                )
                continue
            out[fn.name] = cls(fn, self._require_invoker(), self.config, self.clock)
        return out

    def banner(self) -> str:
        """Core Tools-style list of functions (URLs for HTTP ones) and where the keys to call them are."""
        base = f"http://127.0.0.1:{self.http.port if self.http else self.config.port}"
        routes = {r.function.name: r for r in self.http.routes} if self.http else {}
        lines = ["", "Functions:", ""]
        for fn in sorted(self.indexed.functions, key=lambda f: f.name.casefold()):
            route = routes.get(fn.name)
            if route is not None:
                methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
                text = f"{fn.name}: [{methods}] {base}/{route.template.text} (authLevel: {route.auth_level})"
            else:
                text = f"{fn.name}: {fn.trigger_type}"
            lines.append(f"        {text}{' (disabled)' if fn.disabled else ''}")
        # The keys themselves stay out: this output is the runtime's log (a journal, a file).
        lines += ["", f"Keys (master, function keys): {self.config.state_dir / KEYS_FILE}"]
        return "\n".join([*lines, f"State folder: {self.config.state_dir}", ""])


async def _close_durable_sdk_session() -> None:
    """The durable SDK keeps one aiohttp session per process for its client calls; close it on
    shutdown so it does not warn "Unclosed client session" (the app itself never closes it)."""
    try:
        from azure.durable_functions.models.utils import http_utils
    except ImportError:
        return
    session = getattr(http_utils, "_client_session", None)
    if session is not None and not session.closed:
        await session.close()
