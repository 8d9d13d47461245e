"""The health checks of the secret store and the mail server, and the Azure error classifier.

Used by `shared.health`; split out so each check is read next to its probe. Every check returns
"ok" or "error: <classification>" and never raises for the failures it is about; a secret's value
and a server's reply text never reach the answer (the value is not even read into a variable
that outlives the call).
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Callable
from functools import lru_cache
from typing import Final

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)

from shared.config import Settings
from shared.errors import ExportError, TransientError
from shared.secrets.base import SecretNotFoundError, SecretStore
from shared.secrets.factory import make_secret_store

__all__ = [
    "CONNECT_TIMEOUT_S",
    "PROBE_SECRET",
    "READ_TIMEOUT_S",
    "SMTP_TIMEOUT_S",
    "SmtpProbe",
    "check_secrets",
    "check_smtp",
    "classify_azure",
    "probe_smtp",
    "secret_probe_for",
]

log = logging.getLogger(__name__)

OK: Final = "ok"
# A probe must fail fast rather than make the load balancer wait: no SDK retries, and
# connect/read timeouts well under the usual 5-10 s probe interval.
CONNECT_TIMEOUT_S: Final = 2
READ_TIMEOUT_S: Final = 3
SMTP_TIMEOUT_S: Final = 3.0  # per connect and per reply (EHLO, NOOP, QUIT)
# A legal secret name no job uses (job secrets start with "export-"): reading it proves the store
# answers and lets us read; "not found" is the expected answer.
PROBE_SECRET: Final = "health-probe"

SmtpProbe = Callable[[Settings], None]


def classify_azure(exc: Exception) -> str:
    """A short, secret-free description of why an Azure SDK call failed."""
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


# -- secret store ----------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _key_vault_probe(vault_url: str) -> SecretStore:
    # Its own client, not the jobs' one: no retries and short timeouts, so an outage answers in
    # seconds. Imported here so a local deployment never loads azure-keyvault.
    from shared.secrets.keyvault import KeyVaultSecretStore

    options = {"retry_total": 0, "connection_timeout": CONNECT_TIMEOUT_S, "read_timeout": READ_TIMEOUT_S}
    return KeyVaultSecretStore(vault_url, client_kwargs=options)


def secret_probe_for(settings: Settings) -> SecretStore:
    """The store the checks read: Key Vault (built once per vault) or the local folder store."""
    if settings.key_vault_url is not None:
        return _key_vault_probe(settings.key_vault_url)
    return make_secret_store(settings)


def _classify_secret_error(exc: ExportError) -> str:
    cause = exc.__cause__
    if isinstance(cause, AzureError):
        return classify_azure(cause)
    if isinstance(cause, OSError):  # the local store's folder
        return f"local store {type(cause).__name__}"
    return "unavailable" if isinstance(exc, TransientError) else "refused"


def check_secrets(factory: Callable[[Settings], SecretStore], settings: Settings) -> str:
    """Read the probe secret; "not found" (or any value, dropped at once) means the store works."""
    try:
        factory(settings).get(PROBE_SECRET)
    except SecretNotFoundError:
        return OK
    except ExportError as exc:
        detail = _classify_secret_error(exc)
        log.warning("Health check: secret store %s (%s)", detail, type(exc.__cause__ or exc).__name__)
        return f"error: {detail}"
    except (AzureError, ValueError) as exc:  # raised while building the client
        return f"error: {classify_azure(exc)}"
    return OK


# -- mail server -----------------------------------------------------------------------------


def probe_smtp(settings: Settings) -> None:
    """Connect (with TLS when SMTP_SECURITY is `tls`), EHLO, NOOP, QUIT; never log in or send.

    Raises OSError (refused, timeout, name not found, TLS) or smtplib.SMTPException."""
    host, port = settings.smtp_host or "", settings.smtp_port
    # EHLO with the host name as it is: smtplib's default would do a reverse DNS lookup per call.
    local = socket.gethostname()
    session: smtplib.SMTP
    if settings.smtp_security == "tls":
        context = ssl.create_default_context()
        session = smtplib.SMTP_SSL(host, port, local_hostname=local, timeout=SMTP_TIMEOUT_S, context=context)
    else:
        session = smtplib.SMTP(host, port, local_hostname=local, timeout=SMTP_TIMEOUT_S)
    with session:  # QUIT on the way out
        for command in (session.ehlo, session.noop):
            code, reply = command()
            if code != 250:
                raise smtplib.SMTPResponseException(code, reply)


def _classify_smtp(exc: OSError | smtplib.SMTPException) -> str:
    if isinstance(exc, smtplib.SMTPServerDisconnected):
        return "disconnected"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"smtp {exc.smtp_code}"
    if isinstance(exc, smtplib.SMTPException):
        return "protocol error"
    if isinstance(exc, TimeoutError):
        return "timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "host not found"
    if isinstance(exc, ssl.SSLError):
        return "tls failed"
    return "unreachable"


def check_smtp(settings: Settings, probe: SmtpProbe = probe_smtp) -> str:
    """Is the mail server of SMTP_HOST reachable and speaking SMTP; "ok" or "error: ..."."""
    try:
        probe(settings)
    except (OSError, smtplib.SMTPException) as exc:
        detail = _classify_smtp(exc)
        log.warning("Health check: SMTP server %s:%s %s", settings.smtp_host, settings.smtp_port, detail)
        return f"error: {detail}"
    return OK
