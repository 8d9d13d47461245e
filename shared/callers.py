"""Who is calling the job API, and what they may see and do.

Identity comes from App Service Authentication: in Azure, Easy Auth removes any client-sent
`X-MS-CLIENT-PRINCIPAL*` headers and adds its own for a signed-in caller, and App Service sets
`WEBSITE_AUTH_ENABLED=True`. The self-hosted runtime does the same for named function keys (the
key's name is the identity; the master key is the operator `admin`). Without that setting the
headers are ignored, because any client could send them.

    identified caller   `requested_by` is the caller's identity (a different value is refused
                        unless the caller is an operator); sees, cancels and retries its own jobs
    operator            identity listed in OPERATORS, or holding the role `operator`: all jobs
    trusted client      no identity (trusted-clients mode: anyone holding a function key is
                        trusted; `requested_by` is what the request says); all jobs.
                        REQUIRE_IDENTITY=true refuses such callers (401) instead.

Session jobs (auto-export, started by the system) are shown to every caller, since the people
at the scanner follow them per study; only operators cancel or retry them. Pure functions.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from shared.errors import PermanentError

__all__ = ["OPERATOR_ROLE", "Caller", "Forbidden", "Unauthenticated", "caller_from_headers"]

OPERATOR_ROLE: Final = "operator"
PRINCIPAL_HEADER: Final = "x-ms-client-principal"
NAME_HEADER: Final = "x-ms-client-principal-name"
_ROLE_TYPES: Final = frozenset({"roles", "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"})
_NAME_TYPES: Final = ("name", "preferred_username", "upn", "email",
                      "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name")  # fmt: skip
_SYSTEM_KINDS: Final = frozenset({"session"})  # started by the system, followed by everyone


class Unauthenticated(PermanentError):
    """The service requires an identity and the request carries none (401)."""


class Forbidden(PermanentError):
    """The caller may not do this (403); `field` names the part of the request."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Caller:
    identity: str | None  # None: a trusted client without identity
    operator: bool
    # Whom a rate limit counts against: the identity, else a digest of the presented key.
    bucket: str = "anonymous"

    @property
    def sees_all(self) -> bool:
        return self.operator or self.identity is None

    def owns(self, requested_by: object) -> bool:
        return self.identity is not None and str(requested_by or "").casefold() == self.identity.casefold()

    def may_see(self, record: Mapping[str, Any]) -> bool:
        return self.sees_all or self._owns_job(record) or record.get("kind") in _SYSTEM_KINDS

    def may_act(self, record: Mapping[str, Any]) -> bool:
        return self.sees_all or self._owns_job(record)

    def _owns_job(self, record: Mapping[str, Any]) -> bool:
        # A front-door job's requested_by is what its client's headers said (X-Requested-By,
        # From): it names someone, it does not make the job theirs.
        return record.get("origin") != "frontdoor" and self.owns(record.get("requested_by"))

    def requester(self, declared: object) -> object:
        """The `requested_by` of a new job: the identity, unless an operator (or a trusted
        client) names someone; a non-operator naming someone else is refused."""
        if self.identity is None:
            return declared
        if declared is None or declared == "" or self.owns(declared):
            return self.identity
        if self.operator:
            return declared
        raise Forbidden(
            f"requested_by must be your own identity ({self.identity}) or left out", "requested_by"
        )

    def list_filter(self, requested: str | None) -> str | None:
        """The `requested_by` filter of a listing: a non-operator lists only its own jobs."""
        if self.sees_all:
            return requested
        if requested and not self.owns(requested):
            raise Forbidden("you may list only your own jobs: leave requested_by out", "requested_by")
        return self.identity


TRUSTED: Final = Caller(None, True)


def caller_from_headers(
    headers: Mapping[str, str],
    *,
    principal_trusted: bool,
    require_identity: bool,
    operators: Sequence[str] = (),
    query_key: str | None = None,
) -> Caller:
    """The caller of a request; Unauthenticated when REQUIRE_IDENTITY is set and none is present.
    `query_key`: the key given as `?code=` (the header wins, as at the host)."""
    lower = {k.lower(): v for k, v in headers.items()}
    identity = roles = None
    if principal_trusted:
        identity, roles = _principal(lower)
    if identity is None:
        if require_identity:
            raise Unauthenticated("sign in: this service requires an identity (REQUIRE_IDENTITY)")
        key = lower.get("x-functions-key") or query_key or ""
        digest = hashlib.sha256(key.encode("utf-8", "replace")).hexdigest()[:16] if key else "anonymous"
        return Caller(None, True, bucket=f"key:{digest}")
    listed = {o.casefold() for o in operators}
    operator = identity.casefold() in listed or OPERATOR_ROLE in (roles or ())
    return Caller(identity, operator, bucket=f"id:{identity.casefold()}")


def _principal(headers: Mapping[str, str]) -> tuple[str | None, frozenset[str]]:
    """(identity, roles) from App Service's headers; (None, {}) when there is no principal."""
    encoded = headers.get(PRINCIPAL_HEADER)
    claims: list[Mapping[str, Any]] = []
    if encoded:
        try:
            document = json.loads(base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=False))
        except (binascii.Error, ValueError):
            raise Unauthenticated("the X-MS-CLIENT-PRINCIPAL header is not valid") from None
        raw = document.get("claims") if isinstance(document, Mapping) else None
        claims = [c for c in raw if isinstance(c, Mapping)] if isinstance(raw, list) else []
    roles = frozenset(str(c.get("val")) for c in claims if c.get("typ") in _ROLE_TYPES)
    name = (headers.get(NAME_HEADER) or "").strip()
    if not name:
        by_type = {str(c.get("typ")): str(c.get("val") or "") for c in claims}
        name = next((by_type[t].strip() for t in _NAME_TYPES if by_type.get(t, "").strip()), "")
    if not name:
        return None, frozenset()
    if len(name) > 256 or any(ord(c) < 32 for c in name):
        raise Unauthenticated("the caller's identity is not a usable name")
    return name, roles
