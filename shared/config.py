"""The export service's settings, read once from an environment mapping and validated up front.

`Settings.from_env(os.environ)` is called by the composition root at start-up, never at import
time; a bad or missing setting raises `SettingsError` naming it, so a misconfigured app fails on
its first request with a clear message instead of deep inside an export. Empty strings count as
unset (app settings are often created empty). Settings hold connection strings, so their repr
hides those values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from shared._strict import check_container_name, check_email, check_http_url
from shared.auto_export_config import AutoExportConfig, parse_auto_export_config
from shared.errors import PermanentError, ValidationError
from shared.outbound import LOOPBACK_HOSTS, OutboundPolicy
from shared.secrets.base import check_secret_name
from shared.smart_clients import SmartClient, parse_smart_clients
from shared.storage_policy import DestinationPolicy, parse_container_patterns

__all__ = ["Settings", "SettingsError"]

DEFAULT_LOCAL_SECRETS_PATH: Final = Path(".state/secrets")
DEFAULT_CONTAINER: Final = "exports"
DEFAULT_GENERATED_DATA_CONTAINER: Final = "generated-data"
DEFAULT_SMTP_PORT: Final = 25
# A job whose record and parts have not changed for this long while its orchestration still runs
# is hung (e.g. waiting on a child an operator terminated): the reconciler fails it. Far above
# any legitimate silence: a page takes seconds, the longest durable wait is 5 minutes.
DEFAULT_JOB_STALL_MINUTES: Final = 120
MIN_FRONTDOOR_KEY_LENGTH: Final = 16  # Functions keys are 40+ characters; shorter ones are guessable
# Outcome mail (shared.notify). SMTP_SECURITY unset: implicit TLS on 465, plain on 25 and 1025 or to
# a relay on this machine (maildev), STARTTLS anywhere else (587, a provider's relay).
SMTP_SECURITIES: Final = ("none", "starttls", "tls")
PLAIN_SMTP_PORTS: Final = frozenset({25, 1025})
MAIL_KINDS: Final = ("fhir-export", "batch", "session")  # JobKind values (no jobstore import here)
DEFAULT_MAIL_ON_SUCCESS: Final = frozenset({"fhir-export", "batch"})  # a session's end is no news
# Retries of an outcome mail, in seconds after the first failure: a greylisting relay (451)
# takes a few minutes, an outage an hour; after the last the message is given up and logged.
DEFAULT_MAIL_RETRY_SCHEDULE: Final = (30, 60, 300, 900, 3600)
DEFAULT_MAIL_CLAIM_TIMEOUT_S: Final = 600
# Requests per minute per caller: a person clicking, the web pages polling every few seconds and a
# script watching a dozen jobs stay far below; a loop hammering the API does not.
DEFAULT_RATE_LIMIT_PER_MINUTE: Final = 300
# Caps on running jobs (shared.admission): a person's few jobs at once, and per kind what the
# instance's workers carry without starving each other; sessions are long and mostly idle.
DEFAULT_MAX_RUNNING_JOBS_PER_USER: Final = 4
DEFAULT_MAX_RUNNING_JOBS_PER_KIND: Final = (("fhir-export", 8), ("batch", 16), ("session", 32))
# Unfinished jobs per requester: far more than a person queues, far fewer than a runaway loop.
DEFAULT_MAX_OPEN_JOBS_PER_USER: Final = 100


class SettingsError(PermanentError):
    """A setting is missing or invalid; `setting` is its name (never its value)."""

    def __init__(self, setting: str, message: str) -> None:
        super().__init__(f"setting {setting}: {message}")
        self.setting = setting


@dataclass(frozen=True, kw_only=True)
class Settings:
    # Connection string, or the blob endpoint (https://acct.blob.core.windows.net) with an
    # identity-based connection (`AzureWebJobsStorage__accountName` / `__blobServiceUri`).
    web_jobs_storage: str = field(repr=False)
    key_vault_url: str | None = None
    local_secrets_path: Path = DEFAULT_LOCAL_SECRETS_PATH
    default_fhir_base_url: str | None = None
    default_container: str = DEFAULT_CONTAINER
    smtp_host: str | None = None
    smtp_port: int = DEFAULT_SMTP_PORT
    mail_from: str | None = None
    admin_email: str | None = None
    smtp_security: str = "starttls"  # one of SMTP_SECURITIES
    smtp_username: str | None = None
    # The NAME of the secret holding the SMTP password in the secret store, never the password.
    smtp_password_secret: str | None = None
    mail_admins: tuple[str, ...] = ()  # MAIL_ADMINS; see admin_recipients for ADMIN_EMAIL too
    mail_on_success: frozenset[str] = DEFAULT_MAIL_ON_SUCCESS  # kinds whose successes are mailed
    mail_retry_schedule: tuple[int, ...] = DEFAULT_MAIL_RETRY_SCHEDULE
    # A mail claimed ("sending") this long ago by a notifier that never said how it went (it
    # died) is offered again: far above the SMTP timeout, so its owner is dead, not slow.
    mail_claim_timeout_s: int = DEFAULT_MAIL_CLAIM_TIMEOUT_S
    public_base_url: str | None = None  # the base of the status link in mail; None: no link
    # Destinations without a secret write here: a connection string locally (Azurite), an account
    # URL in Azure (then DefaultAzureCredential, i.e. the app's managed identity).
    export_storage_connection: str = field(repr=False)
    job_stall_minutes: int = DEFAULT_JOB_STALL_MINUTES
    # SMART Backend Services clients of the FHIR front door (SMART_CLIENTS, a JSON list; see
    # shared.smart_clients), and the keys it accepts from the service's own clients instead of a
    # bearer token (FHIR_FRONTDOOR_KEYS, comma-separated; a Key Vault reference in Azure).
    smart_clients: tuple[SmartClient, ...] = ()
    frontdoor_keys: tuple[str, ...] = field(default=(), repr=False)
    # On a single-machine deployment (an acquisition workstation), the folder whose files
    # batches may send (BATCH_LOCAL_ROOT); None: batches of local files are refused.
    batch_local_root: Path | None = None
    # Where jobs may call out (OUTBOUND_ALLOW; see shared.outbound): empty = any public host.
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    # Auto-export (seed 000): the apps whose generated data is exported, their rules and
    # destinations (AUTO_EXPORT_CONFIG, see shared.auto_export_config), and the container the
    # apps write it to, as `{app}/{session}/{name}` (GENERATED_DATA_CONTAINER).
    auto_export: AutoExportConfig = field(default_factory=AutoExportConfig)
    # The containers of the service's own storage a Blob destination may write (names or `*`
    # patterns; DESTINATION_CONTAINERS, default the default container). See shared.storage_policy.
    destination_containers: tuple[str, ...] = (DEFAULT_CONTAINER,)
    generated_data_container: str = DEFAULT_GENERATED_DATA_CONTAINER
    # Traces and logs of the app's own code go to this Application Insights resource
    # (shared.telemetry); None: nowhere. It carries the resource's key, so repr hides it.
    applicationinsights_connection_string: str | None = field(default=None, repr=False)
    # Callers (shared.callers): the X-MS-CLIENT-PRINCIPAL headers are believed only where App
    # Service Authentication (or the self-hosted runtime's named keys) puts them there, which
    # WEBSITE_AUTH_ENABLED says; REQUIRE_IDENTITY refuses callers without one; OPERATORS see all.
    principal_trusted: bool = False
    require_identity: bool = False
    operators: tuple[str, ...] = ()
    # Requests per minute per caller (RATE_LIMIT_PER_MINUTE; shared.rate_limit); 0: no limit.
    rate_limit_per_minute: int = DEFAULT_RATE_LIMIT_PER_MINUTE
    # Caps on running jobs (MAX_RUNNING_JOBS_PER_USER, MAX_RUNNING_JOBS_PER_KIND; shared.admission):
    # a job above one waits `queued` in line; 0: no cap. Kind caps as (kind, cap) pairs.
    max_running_jobs_per_user: int = DEFAULT_MAX_RUNNING_JOBS_PER_USER
    max_running_jobs_per_kind: tuple[tuple[str, int], ...] = DEFAULT_MAX_RUNNING_JOBS_PER_KIND
    # Unfinished jobs per requester (MAX_OPEN_JOBS_PER_USER): a new one over it is refused; 0: none.
    max_open_jobs_per_user: int = DEFAULT_MAX_OPEN_JOBS_PER_USER

    @property
    def destination_policy(self) -> DestinationPolicy:
        return DestinationPolicy(
            own_connections=(self.web_jobs_storage, self.export_storage_connection),
            own_containers=self.destination_containers,
            reserved=frozenset({self.generated_data_container}),
            outbound=self.outbound,
        )

    @property
    def uses_key_vault(self) -> bool:
        return self.key_vault_url is not None

    @property
    def mail_enabled(self) -> bool:
        return self.smtp_host is not None

    @property
    def admin_recipients(self) -> tuple[str, ...]:
        """MAIL_ADMINS, then ADMIN_EMAIL (the older single setting), without repeats."""
        extra = (self.admin_email,) if self.admin_email else ()
        return tuple(dict.fromkeys(self.mail_admins + extra))

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Settings:
        values = {k: v.strip() for k, v in env.items() if isinstance(v, str) and v.strip()}
        storage = _web_jobs_storage(values)
        smtp_host = values.get("SMTP_HOST")
        mail_from = _optional(values, "MAIL_FROM", check_email)
        if smtp_host is not None and mail_from is None:
            raise SettingsError("MAIL_FROM", "is required when SMTP_HOST is set")
        return cls(
            web_jobs_storage=storage,
            key_vault_url=_optional(values, "KEY_VAULT_URL", _check_https_url),
            local_secrets_path=Path(values.get("LOCAL_SECRETS_PATH", str(DEFAULT_LOCAL_SECRETS_PATH))),
            default_fhir_base_url=_optional(values, "EXPORT_DEFAULT_FHIR_BASE_URL", check_http_url),
            default_container=_optional(values, "EXPORT_DEFAULT_CONTAINER", check_container_name)
            or DEFAULT_CONTAINER,
            smtp_host=smtp_host,
            smtp_port=_port(values, "SMTP_PORT", DEFAULT_SMTP_PORT),
            mail_from=mail_from,
            admin_email=_optional(values, "ADMIN_EMAIL", check_email),
            **_mail(values, smtp_host),
            export_storage_connection=_optional(values, "EXPORT_STORAGE_CONNECTION", _check_storage)
            or storage,
            job_stall_minutes=_minutes(values, "JOB_STALL_MINUTES", DEFAULT_JOB_STALL_MINUTES),
            smart_clients=_smart_clients(values),
            frontdoor_keys=_frontdoor_keys(values),
            outbound=_outbound(values),
            batch_local_root=_local_root(values),
            auto_export=_auto_export(values),
            destination_containers=_destination_containers(values),
            generated_data_container=_optional(values, "GENERATED_DATA_CONTAINER", check_container_name)
            or DEFAULT_GENERATED_DATA_CONTAINER,
            applicationinsights_connection_string=values.get("APPLICATIONINSIGHTS_CONNECTION_STRING"),
            principal_trusted=_flag(values, "WEBSITE_AUTH_ENABLED"),
            require_identity=_flag(values, "REQUIRE_IDENTITY"),
            operators=_operators(values),
            rate_limit_per_minute=_bounded(
                values, "RATE_LIMIT_PER_MINUTE", DEFAULT_RATE_LIMIT_PER_MINUTE, 100_000
            ),
            max_running_jobs_per_user=_bounded(
                values, "MAX_RUNNING_JOBS_PER_USER", DEFAULT_MAX_RUNNING_JOBS_PER_USER, 10_000
            ),
            max_running_jobs_per_kind=_kind_caps(values),
            max_open_jobs_per_user=_bounded(
                values, "MAX_OPEN_JOBS_PER_USER", DEFAULT_MAX_OPEN_JOBS_PER_USER, 1_000_000
            ),
        )


def _optional(values: Mapping[str, str], name: str, check: Callable[[str, str], str]) -> str | None:
    value = values.get(name)
    if value is None:
        return None
    try:
        return check(name, value)
    except ValidationError as exc:
        raise SettingsError(name, exc.detail) from None


def _web_jobs_storage(values: Mapping[str, str]) -> str:
    if "AzureWebJobsStorage" in values:
        return _check_storage("AzureWebJobsStorage", values["AzureWebJobsStorage"])
    # Identity-based host storage: the Functions host reads these; we derive the blob endpoint.
    if "AzureWebJobsStorage__blobServiceUri" in values:
        return _check_https_url(
            "AzureWebJobsStorage__blobServiceUri", values["AzureWebJobsStorage__blobServiceUri"]
        )
    if "AzureWebJobsStorage__accountName" in values:
        return f"https://{values['AzureWebJobsStorage__accountName']}.blob.core.windows.net"
    raise SettingsError(
        "AzureWebJobsStorage", "is required (a connection string, or __accountName for identity)"
    )


def _check_storage(name: str, value: str) -> str:
    """A connection string (`Key=Value;...` or `UseDevelopmentStorage=true`) or an account URL."""
    if value.lower().startswith(("http://", "https://")):
        return _check_http_url_setting(name, value)
    pairs = [part.partition("=") for part in value.split(";") if part]
    if not pairs or any(not key or not sep for key, sep, _ in pairs):
        # Never echo the value: it holds an account key.
        raise SettingsError(name, "must be a storage connection string or an account URL")
    return value


def _check_https_url(name: str, value: str) -> str:
    if urlsplit(value).scheme != "https":
        raise SettingsError(name, "must be an https URL")
    return _check_http_url_setting(name, value)


def _check_http_url_setting(name: str, value: str) -> str:
    try:
        return check_http_url(name, value)
    except ValidationError as exc:
        raise SettingsError(name, exc.detail) from None


def _smart_clients(values: Mapping[str, str]) -> tuple[SmartClient, ...]:
    try:
        return parse_smart_clients(values.get("SMART_CLIENTS", "[]"))
    except ValidationError as exc:
        message = exc.detail if exc.field == "SMART_CLIENTS" else str(exc)
        raise SettingsError("SMART_CLIENTS", message) from None


def _frontdoor_keys(values: Mapping[str, str]) -> tuple[str, ...]:
    keys = tuple(key.strip() for key in values.get("FHIR_FRONTDOOR_KEYS", "").split(",") if key.strip())
    if any(len(key) < MIN_FRONTDOOR_KEY_LENGTH for key in keys):
        # Never echo a key, not even a short one.
        raise SettingsError(
            "FHIR_FRONTDOOR_KEYS", f"every key must be at least {MIN_FRONTDOOR_KEY_LENGTH} characters"
        )
    return keys


def _local_root(values: Mapping[str, str]) -> Path | None:
    text = values.get("BATCH_LOCAL_ROOT")
    if text is None:
        return None
    root = Path(text)
    if not root.is_absolute() or not root.is_dir():
        raise SettingsError("BATCH_LOCAL_ROOT", "must be the absolute path of an existing folder")
    return root


def _destination_containers(values: Mapping[str, str]) -> tuple[str, ...]:
    default = values.get("EXPORT_DEFAULT_CONTAINER") or DEFAULT_CONTAINER
    try:
        return parse_container_patterns(values.get("DESTINATION_CONTAINERS"), default)
    except ValueError as exc:
        raise SettingsError("DESTINATION_CONTAINERS", str(exc)) from None


def _auto_export(values: Mapping[str, str]) -> AutoExportConfig:
    try:
        return parse_auto_export_config(values.get("AUTO_EXPORT_CONFIG"))
    except ValidationError as exc:
        where = f"{exc.field}: " if exc.field else ""
        raise SettingsError("AUTO_EXPORT_CONFIG", f"{where}{exc.detail}") from None


def _outbound(values: Mapping[str, str]) -> OutboundPolicy:
    try:
        return OutboundPolicy.parse(values.get("OUTBOUND_ALLOW"))
    except ValueError as exc:
        raise SettingsError("OUTBOUND_ALLOW", str(exc)) from None


def _minutes(values: Mapping[str, str], name: str, default: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= 525_600:
        raise SettingsError(name, "must be a whole number of minutes between 1 and 525600")
    return int(text)


def _port(values: Mapping[str, str], name: str, default: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdecimal()) or not 1 <= int(text) <= 65535:
        raise SettingsError(name, "must be a port number between 1 and 65535")
    return int(text)


def _mail(values: Mapping[str, str], smtp_host: str | None) -> dict[str, Any]:
    """The outcome-mail settings (shared.notify), as keyword arguments of Settings."""
    from shared.notify.messages import check_recipient  # stricter than check_email: one mailbox

    port = _port(values, "SMTP_PORT", DEFAULT_SMTP_PORT)
    # Unset: implicit TLS on 465; plain text to a relay on this machine (maildev, a local MTA) or
    # on the plain ports; STARTTLS anywhere else.
    plain = port in PLAIN_SMTP_PORTS or smtp_host in LOOPBACK_HOSTS
    security = values.get("SMTP_SECURITY", "").lower() or (
        "tls" if port == 465 else "none" if plain else "starttls"
    )
    if security not in SMTP_SECURITIES:
        raise SettingsError("SMTP_SECURITY", f"must be one of {', '.join(SMTP_SECURITIES)}")
    username = values.get("SMTP_USERNAME")
    secret = _optional(values, "SMTP_PASSWORD_SECRET", check_secret_name)
    if (username is None) != (secret is None):
        missing = "SMTP_PASSWORD_SECRET" if secret is None else "SMTP_USERNAME"
        raise SettingsError(missing, "is required with SMTP_USERNAME/SMTP_PASSWORD_SECRET (both or neither)")
    if username is not None and security == "none" and smtp_host not in LOOPBACK_HOSTS:
        raise SettingsError("SMTP_SECURITY", "must be starttls or tls with SMTP_USERNAME (no clear text)")
    admins = tuple(a.strip() for a in values.get("MAIL_ADMINS", "").split(",") if a.strip())
    for address in admins:
        try:
            check_recipient(address, "MAIL_ADMINS")
        except ValidationError as exc:
            raise SettingsError("MAIL_ADMINS", f"every entry {exc.detail}") from None
    kinds = [k.strip() for k in values.get("MAIL_ON_SUCCESS", "").split(",") if k.strip()]
    if any(k not in (*MAIL_KINDS, "none") for k in kinds) or ("none" in kinds and len(kinds) > 1):
        raise SettingsError("MAIL_ON_SUCCESS", f"must be a comma list of {', '.join(MAIL_KINDS)}, or none")
    return {
        "smtp_security": security,
        "smtp_username": username,
        "smtp_password_secret": secret,
        "mail_admins": admins,
        "mail_on_success": frozenset(k for k in kinds if k != "none") if kinds else DEFAULT_MAIL_ON_SUCCESS,
        "mail_retry_schedule": _schedule(values, "MAIL_RETRY_SCHEDULE", DEFAULT_MAIL_RETRY_SCHEDULE),
        "mail_claim_timeout_s": _schedule(values, "MAIL_CLAIM_TIMEOUT_S", (DEFAULT_MAIL_CLAIM_TIMEOUT_S,))[0],
        "public_base_url": _optional(values, "PUBLIC_BASE_URL", _check_http_url_setting),
    }


def _flag(values: Mapping[str, str], name: str) -> bool:
    text = values.get(name, "false").lower()
    if text not in ("true", "false", "1", "0"):
        raise SettingsError(name, "must be true or false")
    return text in ("true", "1")


def _operators(values: Mapping[str, str]) -> tuple[str, ...]:
    names = tuple(n.strip() for n in values.get("OPERATORS", "").split(",") if n.strip())
    if any(len(n) > 256 for n in names):
        raise SettingsError("OPERATORS", "every entry must be an identity of at most 256 characters")
    return names


def _bounded(values: Mapping[str, str], name: str, default: int, top: int) -> int:
    text = values.get(name)
    if text is None:
        return default
    if not (text.isascii() and text.isdecimal()) or int(text) > top:
        raise SettingsError(name, f"must be a whole number from 0 to {top}")
    return int(text)


def _kind_caps(values: Mapping[str, str]) -> tuple[tuple[str, int], ...]:
    """`fhir-export=8,batch=16`: the kinds named get their cap (0: none), the others keep theirs."""
    name, text = "MAX_RUNNING_JOBS_PER_KIND", values.get("MAX_RUNNING_JOBS_PER_KIND", "")
    caps = dict(DEFAULT_MAX_RUNNING_JOBS_PER_KIND)
    seen: set[str] = set()
    for entry in (e.strip() for e in text.split(",") if e.strip()):
        kind, sep, cap = (part.strip() for part in entry.partition("="))
        if not sep or kind not in caps or not (cap.isascii() and cap.isdecimal()) or int(cap) > 100_000:
            raise SettingsError(name, f"must be a comma list of kind=cap ({', '.join(caps)}; 0 to 100000)")
        if kind in seen:
            raise SettingsError(name, f"names {kind} twice")
        seen.add(kind)
        caps[kind] = int(cap)
    return tuple(caps.items())


def _schedule(values: Mapping[str, str], name: str, default: tuple[int, ...]) -> tuple[int, ...]:
    text = values.get(name)
    if text is None:
        return default
    parts = [p.strip() for p in text.split(",")]
    if not 1 <= len(parts) <= 20 or not all(
        p.isascii() and p.isdecimal() and 1 <= int(p) <= 86_400 for p in parts
    ):
        raise SettingsError(name, "must be a comma list of 1 to 20 waits in seconds, each 1 to 86400")
    return tuple(int(p) for p in parts)
