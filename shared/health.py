"""Health checks behind `GET /api/health`: settings, storage, durable runtime, secret store, SMTP.

Each check answers "ok", "not configured" (SMTP without `SMTP_HOST`) or "error: <classification>":
a short, secret-free reason ("unreachable", "http 403 AuthorizationFailure"), never an exception
text, which can hold URLs and keys. What the answer means for the instance:

    critical      settings, storage, durable   one failing: status "unavailable", HTTP 503
    non-critical  secrets, smtp                one failing: status "degraded", HTTP 200
    runtime       ok by construction (this code runs)

Critical checks are what the instance needs to take and run any job: its settings, its own
storage account, the durable runtime (task hub). When one fails, a load balancer or App Service's
health check should stop sending it work. The secret store is only needed by jobs that carry
secrets, and mail waits in the outbox until the server is back (`shared.outbox`); both are shared
by every instance, so a 503 would take them all out for an outage none of them can fix, and the
status pages people watch would go dark with them.

Framework-free: the HTTP adapter (`http_api/health.py`) passes the app settings (read per
request, never at import) and a probe of its durable client. Probes are built once per process
(`probe_for`, `secret_probe_for`), fail fast (no SDK retries, timeouts of a few seconds), and run
concurrently, each bounded by `CHECK_TIMEOUT_S`. The SMTP and secret probes live in
`shared.health_probes`.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Protocol

from azure.core.exceptions import AzureError
from azure.storage.blob import BlobServiceClient

from shared.config import Settings, SettingsError
from shared.health_probes import (
    CONNECT_TIMEOUT_S,
    READ_TIMEOUT_S,
    SmtpProbe,
    check_secrets,
    check_smtp,
    classify_azure,
    probe_smtp,
    secret_probe_for,
)
from shared.secrets.base import SecretStore

__all__ = [
    "CRITICAL",
    "NOT_CONFIGURED",
    "OK",
    "BlobServiceProbe",
    "DurableProbe",
    "HealthReport",
    "Probes",
    "StorageProbe",
    "check_durable",
    "check_health",
    "check_storage",
    "probe_for",
    "status_probe",
]

log = logging.getLogger(__name__)

OK: Final = "ok"
NOT_CONFIGURED: Final = "not configured"
CRITICAL: Final = frozenset({"settings", "storage", "durable"})
SERVER_TIMEOUT_S: Final = 3  # the storage service's own per-operation limit (the `timeout` query parameter)
# Every check together must answer within a load balancer's probe timeout (App Service: about
# 5-10 s); a check still running then is reported as a timeout (its thread ends by its own limits).
CHECK_TIMEOUT_S: Final = 5.0
# An instance id no orchestration has: asking for it reads the task hub and finds nothing.
PROBE_INSTANCE: Final = "health-probe"
_STATUS_CODE: Final = re.compile(r"status code (\d{3})")

DurableProbe = Callable[[], Awaitable[None]]


class StorageProbe(Protocol):
    """Proves the storage account answers: returns normally, or raises an `AzureError`."""

    def probe(self) -> None: ...


class _ContainerLister(Protocol):
    def list_containers(self, **kwargs: Any) -> Iterable[object]: ...


class BlobServiceProbe:
    """Reads one page of at most one container: the cheapest call every data-plane role may make."""

    def __init__(self, client: _ContainerLister) -> None:
        self._client = client

    def probe(self) -> None:
        # The pager is lazy: taking the first item fetches exactly one page.
        next(iter(self._client.list_containers(results_per_page=1, timeout=SERVER_TIMEOUT_S)), None)


@lru_cache(maxsize=8)
def probe_for(storage: str) -> BlobServiceProbe:
    """The process-wide probe for `storage`, built on first use (building a client does no I/O).

    `storage` is `Settings.web_jobs_storage`: a connection string, or a blob endpoint URL for an
    identity-based connection (then `DefaultAzureCredential`: the app's managed identity in Azure,
    selected by `AZURE_CLIENT_ID` when user-assigned).
    """
    options: dict[str, Any] = {
        "retry_total": 0,
        "connection_timeout": CONNECT_TIMEOUT_S,
        "read_timeout": READ_TIMEOUT_S,
    }
    if storage.lower().startswith(("https://", "http://")):
        # Imported here: only identity-based deployments pay for azure-identity's import.
        from azure.identity import DefaultAzureCredential

        return BlobServiceProbe(BlobServiceClient(storage, credential=DefaultAzureCredential(), **options))
    return BlobServiceProbe(BlobServiceClient.from_connection_string(storage, **options))


class _StatusClient(Protocol):
    """The part of the durable client a health probe uses."""

    def get_status(self, instance_id: str) -> Awaitable[object]: ...


async def status_probe(client: _StatusClient) -> None:
    """One status query for an instance that does not exist: the runtime's HTTP API and its task
    hub answered. A 404 without a body makes the SDK raise TypeError: that is the answer too."""
    try:
        await client.get_status(PROBE_INSTANCE)
    except TypeError:
        return


@dataclass(frozen=True)
class Probes:
    """What the checks call out to; tests replace them with fakes."""

    storage: Callable[[str], StorageProbe] = probe_for
    secrets: Callable[[Settings], SecretStore] = secret_probe_for
    smtp: SmtpProbe = probe_smtp


@dataclass(frozen=True)
class HealthReport:
    """The outcome of every check: "ok", "not configured" or "error: <classification>" by name."""

    checks: Mapping[str, str]
    critical: frozenset[str] = field(default=CRITICAL)

    def failed(self) -> list[str]:
        return [name for name, state in self.checks.items() if state not in (OK, NOT_CONFIGURED)]

    @property
    def healthy(self) -> bool:
        return not self.failed()

    @property
    def available(self) -> bool:
        """False when a critical check failed: the instance cannot take or run work."""
        return not set(self.failed()) & self.critical

    @property
    def status(self) -> str:
        return OK if self.healthy else "degraded" if self.available else "unavailable"

    @property
    def http_status(self) -> int:
        """200 unless a critical check failed (then 503: load balancers take the instance out)."""
        return 200 if self.available else 503

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "checks": dict(self.checks)}


def check_storage(storage: str, probe_factory: Callable[[str], StorageProbe] = probe_for) -> str:
    """Probe one storage account; "ok" or "error: <classification>"."""
    try:
        probe_factory(storage).probe()
    except (AzureError, ValueError) as exc:
        # ValueError: a malformed connection string, raised while building the client.
        detail = classify_azure(exc)
        log.warning("Health check: storage %s (%s)", detail, type(exc).__name__)
        return f"error: {detail}"
    return OK


def _classify_durable(exc: Exception) -> str:
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, OSError):  # aiohttp's connection errors are OSErrors
        return "unreachable"
    found = _STATUS_CODE.search(str(exc))  # the SDK's "unexpected status code 500"
    return f"http {found.group(1)}" if found else type(exc).__name__


async def check_durable(probe: DurableProbe | None, timeout: float = CHECK_TIMEOUT_S) -> str:
    """Run the durable client's probe; "ok" or "error: <classification>"."""
    if probe is None:
        return "error: not checked (no durable client)"
    try:
        await asyncio.wait_for(probe(), timeout)
    except Exception as exc:  # noqa: BLE001 - the durable SDK raises a bare Exception for an unexpected answer
        detail = _classify_durable(exc)
        log.warning("Health check: durable runtime %s (%s)", detail, type(exc).__name__)
        return f"error: {detail}"
    return OK


async def _bounded(check: Callable[[], str], timeout: float) -> str:
    """A blocking check in a worker thread, reported as a timeout when it takes too long."""
    try:
        return await asyncio.wait_for(asyncio.to_thread(check), timeout)
    except TimeoutError:
        return "error: timeout"


async def check_health(
    env: Mapping[str, str],
    *,
    durable: DurableProbe | None = None,
    probes: Probes | None = None,
    timeout: float = CHECK_TIMEOUT_S,
) -> HealthReport:
    """Every check of the service, from the app settings in `env` (read by the caller, per call).

    Invalid settings fail the `settings` check with the `SettingsError` text, which names the
    setting and never its value; the checks that need settings are then not run, while the
    durable runtime (reached through the host's binding, not the settings) still is.
    """
    probes = probes or Probes()
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        log.warning("Health check: %s", exc)
        skipped = "error: not checked (invalid settings)"
        state = await check_durable(durable, timeout)
        checks = {"settings": f"error: {exc}", "storage": skipped, "durable": state}
        return HealthReport({"runtime": OK, **checks, "secrets": skipped, "smtp": skipped})
    storage, state, secrets, smtp = await asyncio.gather(
        _bounded(lambda: check_storage(settings.web_jobs_storage, probes.storage), timeout),
        check_durable(durable, timeout),
        _bounded(lambda: check_secrets(probes.secrets, settings), timeout),
        _bounded(
            lambda: check_smtp(settings, probes.smtp) if settings.mail_enabled else NOT_CONFIGURED, timeout
        ),
    )
    return HealthReport(
        {
            "runtime": OK,
            "settings": OK,
            "storage": storage,
            "durable": state,
            "secrets": secrets,
            "smtp": smtp,
        }
    )
