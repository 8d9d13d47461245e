"""The contracts trigger listeners and output bindings implement (owner: triggers).

INTERFACE: the host composition code (selfhost/host.py) builds one listener per function whose
trigger type is in LISTENERS, calls `await start()` after the HTTP server is up and
`await stop()` on shutdown. Output handlers are looked up by binding type by the invoker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from selfhost.config import HostConfig
from selfhost.functions import Clock, FunctionInfo, Invoker


class TriggerListener(Protocol):
    def __init__(self, fn: FunctionInfo, invoker: Invoker, config: HostConfig, clock: Clock) -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


class OutputHandler(Protocol):
    """Writes the value a function set on an output binding (queue message(s), blob)."""

    async def write(
        self, binding: Mapping[str, Any], value: Any, binding_data: Mapping[str, Any]
    ) -> None: ...
