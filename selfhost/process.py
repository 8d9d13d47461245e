"""The runtime as an OS process: what `python -m selfhost` runs.

`main()`:
1. take the state-folder lock (exit 2 if another runtime holds it);
2. copy local.settings.json `Values` into the environment, set `WEBSITE_AUTH_ENABLED=True`
   unless it is set already (App Service sets it when authentication is on; the runtime's
   caller identity headers are its local stand-in), load host.json;
3. index function_app.py, load or create the keys (exit 1 with one paragraph, no traceback);
4. run `selfhost.host.Runtime` on one long-lived event loop and print the function URLs and keys;
5. on SIGINT/SIGTERM stop it (a second signal exits at once) and return 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from selfhost.config import ConfigError, apply_local_settings, load_host_config
from selfhost.host import THREAD_PREFIX, Runtime
from selfhost.indexing import IndexingError, index_app
from selfhost.keys import KeysError
from selfhost.keystore import KeyStore
from selfhost.logs import configure_logging
from selfhost.statelock import StateLock, StateLockedError

__all__ = ["AUTH_ENABLED_SETTING", "main", "resolve_port"]

AUTH_ENABLED_SETTING = "WEBSITE_AUTH_ENABLED"

log = logging.getLogger(__name__)


def main(app_root: Path, state_dir: Path | None = None, port: int | None = None) -> int:
    """Run the host until SIGINT/SIGTERM; return the process exit code."""
    configure_logging()
    app_root = app_root.resolve()
    state_dir = (state_dir or app_root / ".selfhost").resolve()
    lock = StateLock(state_dir)
    try:
        lock.acquire()
    except StateLockedError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    try:
        code = _run_locked(app_root, state_dir, port)
    finally:
        lock.release()
    _abandon_stuck_threads(code)
    return code


def resolve_port(cli_port: int | None, local_settings: Mapping[str, Any]) -> int:
    """`--port`, else local.settings.json `Host.LocalHttpPort`, else 7071 (Core Tools' order)."""
    if cli_port is not None:
        return cli_port
    raw = (local_settings.get("Host") or {}).get("LocalHttpPort")
    if raw in (None, ""):
        return 7071
    try:
        return int(raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"local.settings.json: Host.LocalHttpPort must be a port number, got {raw!r}"
        ) from exc


def _run_locked(app_root: Path, state_dir: Path, port: int | None) -> int:
    try:
        settings = apply_local_settings(app_root, os.environ)
        # Only this process's environment (what the app sees); it never reaches the caller's.
        os.environ.setdefault(AUTH_ENABLED_SETTING, "True")
        configure_logging()  # SELFHOST_LOG_LEVEL may come from local.settings.json
        config = load_host_config(app_root, state_dir, resolve_port(port, settings))
        indexed = index_app(app_root)
        keys = KeyStore.open(state_dir)
    except (ConfigError, IndexingError, KeysError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 1
    except ValueError as exc:  # load_host_config's int()/float() on a malformed host.json value
        print(f"error: host.json has an invalid value: {exc}", file=sys.stderr, flush=True)
        return 1
    return asyncio.run(_serve(Runtime(config, indexed, keys)))


async def _serve(runtime: Runtime) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def on_signal() -> None:
        if stop.is_set():
            log.warning("Second stop signal: exiting without waiting for running functions")
            os._exit(1)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal)
    try:
        await runtime.start()
    except OSError as exc:  # typically the port is taken
        print(f"error: cannot start the runtime: {exc}", file=sys.stderr, flush=True)
        await runtime.stop()
        return 1
    print(runtime.banner(), flush=True)
    log.info("Host started; press Ctrl+C to stop")
    await stop.wait()
    log.info("Stopping the host")
    await runtime.stop()
    log.info("Host stopped")
    return 0


def _abandon_stuck_threads(code: int) -> None:
    """A sync function still running would make interpreter exit wait forever for its thread."""
    deadline = time.monotonic() + 1.0
    for t in threading.enumerate():
        if t.name.startswith(THREAD_PREFIX):
            t.join(timeout=max(0.0, deadline - time.monotonic()))  # idle workers exit promptly
    stuck = [t for t in threading.enumerate() if t.name.startswith(THREAD_PREFIX) and t.is_alive()]
    if stuck:
        log.warning("Exiting with %d function(s) still running in threads", len(stuck))
        logging.shutdown()
        sys.stdout.flush()
        os._exit(code)
