"""`KeyVaultSecretStore`: per-job secrets in Azure Key Vault through the real `SecretClient`.

The client is built once per store (it owns the HTTP pipeline and the token cache). In
production the credential is DefaultAzureCredential (the app's managed identity); tests inject a
static credential and `client_kwargs` such as `verify_challenge_resource=False` and
`connection_verify=<ca.pem>` to talk to the local HTTPS server in tests/support/keyvault_server.py.

Key Vault keeps deleted secrets (soft delete), and a deleted name cannot be set again until it is
purged; `delete` therefore deletes, waits for the deletion, then purges when the vault allows it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.credentials import TokenCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.keyvault.secrets import SecretClient

from shared.errors import PermanentError, RetryAfterError, TransientError
from shared.retry import parse_retry_after
from shared.secrets.base import SecretConflictError, SecretNotFoundError, check_secret_name

__all__ = ["KeyVaultSecretStore"]

log = logging.getLogger(__name__)

_TRANSIENT_STATUS: Final = frozenset({408, 429, 500, 502, 503, 504})
_CONTENT_TYPE: Final = "text/plain"
_TAGS: Final = {"managed-by": "bulk-export"}  # lets an operator find leftovers of crashed jobs


class KeyVaultSecretStore:
    """`SecretStore` over one vault."""

    def __init__(
        self,
        vault_url: str,
        credential: TokenCredential | None = None,
        *,
        polling_interval_s: float = 2.0,
        delete_timeout_s: float = 60.0,
        client_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        if credential is None:
            # Imported here: only production needs azure-identity's credential chain.
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        self._client = SecretClient(vault_url, credential, **dict(client_kwargs or {}))
        self._polling_interval_s = polling_interval_s
        self._delete_timeout_s = delete_timeout_s

    @property
    def vault_url(self) -> str:
        return self._client.vault_url

    def set(self, name: str, value: str) -> None:
        check_secret_name("secret_name", name)
        with _vault_errors("set", name):
            try:
                self._client.set_secret(name, value, content_type=_CONTENT_TYPE, tags=dict(_TAGS))
            except ResourceExistsError:
                # 409: the name belongs to a deleted secret that is not purged yet.
                raise SecretConflictError(name) from None
        log.info("stored secret %s in Key Vault", name)

    def get(self, name: str) -> str:
        check_secret_name("secret_name", name)
        with _vault_errors("get", name):
            try:
                secret = self._client.get_secret(name)
            except ResourceNotFoundError:
                raise SecretNotFoundError(name) from None
        if secret.value is None:
            raise SecretNotFoundError(name)
        return secret.value

    def delete(self, name: str) -> None:
        """Delete and purge; a secret that is already gone (or only soft-deleted) is fine."""
        check_secret_name("secret_name", name)
        with _vault_errors("delete", name):
            try:
                poller = self._client.begin_delete_secret(name, _polling_interval=self._polling_interval_s)
            except ResourceNotFoundError:
                log.debug("secret %s was already deleted", name)
            else:
                # wait() polls GET /deletedsecrets/{name} until the deletion is visible (result()
                # would not wait); purging before that fails with 409 on a real vault.
                poller.wait(timeout=self._delete_timeout_s)
                if not poller.done():
                    raise TransientError(f"delete secret {name!r}: deletion still in progress")
            self._purge(name)
        log.info("deleted secret %s from Key Vault", name)

    def _purge(self, name: str) -> None:
        try:
            self._client.purge_deleted_secret(name)
        except ResourceNotFoundError:
            pass  # soft delete is off, or an earlier call purged it already
        except HttpResponseError as exc:
            if exc.status_code != 403:
                raise
            # No purge permission, or purge protection: the name stays taken until the vault's
            # retention ends. Harmless, since names are unique per job.
            log.warning("secret %s deleted but not purged: purge is not permitted", name)


@contextmanager
def _vault_errors(action: str, name: str) -> Iterator[None]:
    """Map SDK errors onto the domain tree; messages name the secret, never its value."""
    try:
        yield
    except ClientAuthenticationError as exc:
        raise PermanentError(f"{action} secret {name!r}: not authorized (HTTP {exc.status_code})") from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        message = f"{action} secret {name!r}: HTTP {status} {_error_code(exc)}".rstrip()
        if status in _TRANSIENT_STATUS:
            headers: Mapping[str, str] = getattr(exc.response, "headers", None) or {}
            retry_after = parse_retry_after(headers.get("Retry-After"), datetime.now(UTC))
            if retry_after is not None:
                raise RetryAfterError(message, retry_after) from exc
            raise TransientError(message) from exc
        raise PermanentError(message) from exc
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(
            f"{action} secret {name!r}: Key Vault unreachable ({type(exc).__name__})"
        ) from exc


def _error_code(exc: HttpResponseError) -> str:
    error = getattr(exc, "error", None)
    return str(getattr(error, "code", "") or "")
