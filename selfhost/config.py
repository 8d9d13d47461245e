"""Host configuration: `host.json`, `local.settings.json` and command-line options in one record.

`load_host_config` reads host.json once at start-up; `apply_local_settings` copies the
`Values` of local.settings.json into the environment the way Core Tools does (an environment
variable that is already set wins; values must be strings; null is skipped). The app setting
`PUBLIC_BASE_URL` (the app's own public address) is also the runtime's: every absolute URL the
runtime hands out (durable management URLs, `req.url`) starts with it, never with the request's
Host header, which any client can forge.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


class ConfigError(Exception):
    """host.json or local.settings.json is unusable; the message names the file and key."""


@dataclass(frozen=True)
class DurableConfig:
    hub_name: str = "TestHubName"
    max_concurrent_activities: int = 10
    max_concurrent_orchestrations: int = 10


@dataclass(frozen=True)
class QueuesConfig:
    batch_size: int = 16
    new_batch_threshold: int | None = None  # None: (batch_size/2) * cpu count
    max_polling_interval_s: float = 2.0  # 2 s in the Development environment (host facts §3.1)
    visibility_timeout_s: float = 0.0
    max_dequeue_count: int = 5
    message_encoding: str = "base64"  # or "none"


@dataclass(frozen=True)
class HostConfig:
    app_root: Path
    state_dir: Path
    port: int = 7071
    route_prefix: str = "api"
    function_timeout_s: float | None = 30 * 60.0  # non-Consumption default; None = unbounded
    durable: DurableConfig = field(default_factory=DurableConfig)
    queues: QueuesConfig = field(default_factory=QueuesConfig)
    host_id: str = "selfhost"
    # PUBLIC_BASE_URL without a trailing "/"; None: http://127.0.0.1:<port>.
    public_base_url: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


PUBLIC_BASE_URL = "PUBLIC_BASE_URL"


def parse_public_base_url(raw: str | None) -> str | None:
    """The configured public base (no trailing "/"), None when unset or empty; ConfigError if unusable."""
    if raw is None or not raw.strip():
        return None
    text = raw.strip()
    problem = f"{PUBLIC_BASE_URL} must be an http(s) URL such as https://exports.example.org"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - parsing the port is the check: "host:abc" raises ValueError
    except ValueError:
        raise ConfigError(f"{problem}, got {text!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{problem}, got {text!r}")
    if not text.isascii() or any(c.isspace() or not c.isprintable() for c in text):
        raise ConfigError(f"{problem} (printable ASCII, no spaces), got {text!r}")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(f"{problem}, without credentials, query or fragment")
    return text.rstrip("/")


def _timespan_seconds(text: str, where: str) -> float | None:
    """Parse a .NET TimeSpan text ("00:05:00", "1.02:00:00", "-1")."""
    text = text.strip()
    if text in ("-1", "-00:00:01"):
        return None
    days = 0
    if "." in text.split(":")[0]:
        d, text = text.split(".", 1)
        days = int(d)
    parts = text.split(":")
    if len(parts) != 3:
        raise ConfigError(f"host.json: {where} must be a TimeSpan like 00:05:00, got {text!r}")
    h, m, s = parts
    return days * 86400 + int(h) * 3600 + int(m) * 60 + float(s)


def load_host_config(app_root: Path, state_dir: Path, port: int | None = None) -> HostConfig:
    path = app_root / "host.json"
    raw: dict[str, Any] = {}
    if path.exists():
        try:
            raw = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"host.json is not valid JSON: {exc}") from exc
    ext = raw.get("extensions") or {}
    http = ext.get("http") or {}
    route_prefix = str(http.get("routePrefix", "api")).strip("/")
    dt = ext.get("durableTask") or {}
    cpu = os.cpu_count() or 1
    durable = DurableConfig(
        hub_name=str(dt.get("hubName") or os.environ.get("WEBSITE_SITE_NAME") or "TestHubName"),
        max_concurrent_activities=int(dt.get("maxConcurrentActivityFunctions", 10 * cpu)),
        max_concurrent_orchestrations=int(dt.get("maxConcurrentOrchestratorFunctions", 10 * cpu)),
    )
    q = ext.get("queues") or {}
    queues = QueuesConfig(
        batch_size=int(q.get("batchSize", 16)),
        new_batch_threshold=(int(q["newBatchThreshold"]) if "newBatchThreshold" in q else None),
        max_polling_interval_s=(
            _timespan_seconds(str(q["maxPollingInterval"]), "extensions.queues.maxPollingInterval") or 2.0
            if "maxPollingInterval" in q
            else 2.0
        ),
        visibility_timeout_s=(
            _timespan_seconds(str(q["visibilityTimeout"]), "extensions.queues.visibilityTimeout") or 0.0
            if "visibilityTimeout" in q
            else 0.0
        ),
        max_dequeue_count=int(q.get("maxDequeueCount", 5)),
        message_encoding=str(q.get("messageEncoding", "base64")).lower(),
    )
    timeout: float | None = 30 * 60.0
    if "functionTimeout" in raw:
        timeout = _timespan_seconds(str(raw["functionTimeout"]), "functionTimeout")
    host_id = os.environ.get("AzureFunctionsWebHost__hostid") or "selfhost"  # noqa: SIM112 - the host's own spelling
    return HostConfig(
        app_root=app_root,
        state_dir=state_dir,
        port=port if port is not None else 7071,
        route_prefix=route_prefix,
        function_timeout_s=timeout,
        durable=durable,
        queues=queues,
        host_id=host_id.lower()[:32].rstrip("-"),
        public_base_url=parse_public_base_url(os.environ.get(PUBLIC_BASE_URL)),
        raw=raw,
    )


def apply_local_settings(app_root: Path, environ: MutableMapping[str, str]) -> dict[str, Any]:
    """Copy local.settings.json `Values` into `environ`; return the parsed file (or {})."""
    path = app_root / "local.settings.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"local.settings.json is not valid JSON: {exc}") from exc
    values = data.get("Values") or {}
    for key, value in values.items():
        if value is None:
            continue
        if not isinstance(value, str):
            raise ConfigError(f"local.settings.json: Values.{key} must be a string")
        if key in environ:
            log.warning("Skipping '%s' from local.settings.json: already defined in the environment", key)
            continue
        environ[key] = value
    for name, value in (data.get("ConnectionStrings") or {}).items():
        environ.setdefault(f"ConnectionStrings:{name}", str(value))
    return dict(data)
