"""Health checks behind `GET /api/health`: are the settings valid, does the storage account answer.

Framework-free: the HTTP adapter (`http_api/health.py`) passes the app settings in (read per
request, never at import) and turns the `HealthReport` into a response. Settings are read by
`shared.config.Settings`, the one reader. The Blob client is built once per process per storage
account (`probe_for`), never per request. Results never carry secrets: a failed probe is reported
as a short classification ("error: unreachable"), not as the exception text, which can hold URLs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Protocol

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.storage.blob import BlobServiceClient

from shared.config import Settings, SettingsError

__all__ = [
    "OK",
    "BlobServiceProbe",
    "HealthReport",
    "StorageProbe",
    "check_health",
    "check_storage",
    "probe_for",
]

log = logging.getLogger(__name__)

OK = "ok"

# A health probe must fail fast rather than make the load balancer wait: no SDK retries, and
# connect/read timeouts well under the usual 5-10 s probe interval.
CONNECT_TIMEOUT_S = 2
READ_TIMEOUT_S = 3
SERVER_TIMEOUT_S = 3  # the storage service's own per-operation limit (the `timeout` query parameter)


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


@dataclass(frozen=True)
class HealthReport:
    """The outcome of every check: "ok" or "error: <classification>" per check name."""

    checks: Mapping[str, str]

    @property
    def healthy(self) -> bool:
        return all(value == OK for value in self.checks.values())

    @property
    def status(self) -> str:
        return OK if self.healthy else "degraded"

    @property
    def http_status(self) -> int:
        """200 when every check passed, 503 otherwise (load balancers take the instance out)."""
        return 200 if self.healthy else 503

    def to_json(self) -> dict[str, object]:
        return {"status": self.status, "checks": dict(self.checks)}


def _classify(exc: Exception) -> str:
    """A short, secret-free description of why the storage check failed."""
    if isinstance(exc, ServiceRequestTimeoutError | ServiceResponseTimeoutError):
        return "timeout"
    if isinstance(exc, ClientAuthenticationError):
        return "authentication failed"
    if isinstance(exc, HttpResponseError):
        # Storage errors carry a StorageErrorCode enum; others a plain string or nothing.
        error_code = getattr(exc, "error_code", None)
        code = getattr(error_code, "value", error_code) or exc.reason or ""
        return f"http {exc.status_code} {code}".strip()
    if isinstance(exc, ServiceRequestError | ServiceResponseError):
        return "unreachable"
    if isinstance(exc, ValueError):
        return "invalid connection setting"
    return type(exc).__name__


def check_storage(storage: str, probe_factory: Callable[[str], StorageProbe] = probe_for) -> str:
    """Probe one storage account; "ok" or "error: <classification>"."""
    try:
        probe_factory(storage).probe()
    except (AzureError, ValueError) as exc:
        # ValueError: a malformed connection string, raised while building the client.
        detail = _classify(exc)
        log.warning("Health check: storage %s (%s)", detail, type(exc).__name__)
        return f"error: {detail}"
    return OK


def check_health(
    env: Mapping[str, str], probe_factory: Callable[[str], StorageProbe] = probe_for
) -> HealthReport:
    """Every check of the service, from the app settings in `env` (read by the caller, per call).

    `runtime` is ok by construction (this code runs). Invalid settings fail the `settings` check
    with the `SettingsError` text, which names the setting and never its value; storage is then
    not probed, since the settings do not say where it is.
    """
    try:
        settings = Settings.from_env(env)
    except SettingsError as exc:
        log.warning("Health check: %s", exc)
        return HealthReport(
            checks={
                "runtime": OK,
                "settings": f"error: {exc}",
                "storage": "error: not checked (invalid settings)",
            }
        )
    storage = check_storage(settings.web_jobs_storage, probe_factory)
    return HealthReport(checks={"runtime": OK, "settings": OK, "storage": storage})
