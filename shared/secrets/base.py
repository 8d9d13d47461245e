"""The `SecretStore` role, its errors, and the rules for per-job secret names.

Secret VALUES only ever pass through `set` and `get`; job records, orchestration input and logs
carry secret NAMES. Names are unique per job (a random suffix, not only the job id) because Key
Vault soft delete keeps a deleted name unusable until it is purged, and purge may not be allowed.
Implementations must never put a value into a message, a log line or a repr.
"""

from __future__ import annotations

import re
import secrets
from typing import Final, Protocol, runtime_checkable

from shared.errors import PermanentError, ValidationError

__all__ = [
    "MAX_SECRET_NAME_LENGTH",
    "MAX_SECRET_VALUE_LENGTH",
    "ROLE_DESTINATION",
    "ROLE_SOURCE_AUTH",
    "SecretConflictError",
    "SecretNotFoundError",
    "SecretStore",
    "check_secret_name",
    "new_secret_name",
]

# Key Vault's rule for secret names (`^[0-9a-zA-Z-]+$`, at most 127 characters). The local store
# uses the same rule, so a name that works locally works in Azure, and names are safe file names.
MAX_SECRET_NAME_LENGTH: Final = 127
_NAME: Final = re.compile(r"^[0-9A-Za-z-]{1,127}$")
# Key Vault accepts values up to 25 KiB; refusing bigger ones at submission gives a 400, not a 500.
MAX_SECRET_VALUE_LENGTH: Final = 25 * 1024

ROLE_SOURCE_AUTH: Final = "source-auth"
ROLE_DESTINATION: Final = "destination"

_PREFIX: Final = "export"
_SUFFIX_BYTES: Final = 6  # 12 hex characters: collisions are not a practical concern


class SecretNotFoundError(PermanentError):
    """No secret of that name (never set, deleted, or purged)."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret {name!r} not found")
        self.name = name


class SecretConflictError(PermanentError):
    """The name cannot be used now: Key Vault keeps it for a deleted, not yet purged secret."""

    def __init__(self, name: str) -> None:
        super().__init__(f"secret name {name!r} is held by a deleted secret that is not purged")
        self.name = name


@runtime_checkable
class SecretStore(Protocol):
    """Stores secret values by name. Transient failures raise TransientError."""

    def set(self, name: str, value: str) -> None:
        """Create or replace the secret `name`."""
        ...

    def get(self, name: str) -> str:
        """The current value; SecretNotFoundError when there is none."""
        ...

    def delete(self, name: str) -> None:
        """Remove the secret for good; deleting a missing secret is not an error."""
        ...


def check_secret_name(field: str, name: str) -> str:
    """Return `name` when it is a legal secret name, else ValidationError naming `field`."""
    if not _NAME.match(name):
        raise ValidationError(field, f"must be 1..{MAX_SECRET_NAME_LENGTH} letters, digits or dashes")
    return name


def new_secret_name(job_id: str, role: str) -> str:
    """A fresh, legal name such as `export-3f2a...-source-auth-9c1d2e3f4a5b`.

    The job id (any text) is reduced to letters, digits and single dashes and shortened so the
    whole name fits in 127 characters; the random suffix keeps names unique even when a client
    reuses a job id, so a soft-deleted secret can never block a new job.
    """
    role_part = _slug(role)
    if not role_part:
        raise ValueError("role must contain letters or digits")
    suffix = secrets.token_hex(_SUFFIX_BYTES)
    fixed = len(_PREFIX) + len(role_part) + len(suffix) + 3  # three joining dashes
    room = MAX_SECRET_NAME_LENGTH - fixed
    if room < 1:
        raise ValueError("role is too long for a secret name")
    job_part = _slug(job_id)[:room].strip("-") or "job"
    return f"{_PREFIX}-{job_part}-{role_part}-{suffix}"


def _slug(text: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^0-9A-Za-z]", "-", text)).strip("-")
