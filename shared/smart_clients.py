"""SMART Backend Services client registrations (the SMART_CLIENTS setting) and system scopes.

SMART_CLIENTS is a JSON list; each entry registers one client with its public keys, inline or
at a URL, and the scopes it may be granted:

    [{"client_id": "analytics", "jwks": {"keys": [{"kty": "RSA", "kid": "k1", ...}]},
      "scopes": ["system/*.read"]},
     {"client_id": "warehouse", "jwks_url": "https://warehouse.example/jwks.json",
      "scopes": ["system/Patient.rs", "system/Observation.rs"]}]

`parse_smart_clients` checks everything when the settings load; a `ValidationError` names the
entry and the field. Scopes are the read scopes a Bulk Data export needs, in the SMART v1 form
`system/(*|Type).read` and the v2 form `system/(*|Type).rs`. No I/O; never imports azure.*.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import jwt

from shared._strict import check_http_url
from shared.errors import ValidationError
from shared.outbound import LOOPBACK_HOSTS

__all__ = [
    "ALGORITHMS",
    "Scope",
    "SmartClient",
    "check_jwks_url",
    "key_fits",
    "parse_scope",
    "parse_smart_clients",
    "usable_keys",
]

# The assertion algorithms SMART Backend Services requires servers to support; `none` and the
# HMAC family are refused (a client's key must be asymmetric: the server holds only its public half).
ALGORITHMS: Final = ("RS384", "ES384")
_CLIENT_ID: Final = re.compile(r"^[!-~]{1,128}$")  # printable ASCII, no spaces; fits a job label
_SCOPE: Final = re.compile(r"^system/(\*|[A-Z][A-Za-z]{0,63})\.(read|rs)$")
_FIELDS: Final = frozenset({"client_id", "jwks", "jwks_url", "scopes"})
# Loopback names a JWKS URL may use with plain http (local testing only).


@dataclass(frozen=True)
class Scope:
    """One granted read scope; `resource_type` None means every type (`system/*.read`)."""

    text: str
    resource_type: str | None


def parse_scope(text: str) -> Scope | None:
    """The scope, or None when it is not a system read scope this server grants."""
    match = _SCOPE.match(text)
    if match is None:
        return None
    return Scope(text, None if match.group(1) == "*" else match.group(1))


@dataclass(frozen=True)
class SmartClient:
    """A registered backend service: exactly one of `jwks` (inline) and `jwks_url`."""

    client_id: str
    scopes: tuple[Scope, ...]
    jwks: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)
    jwks_url: str | None = None

    def covers(self, wanted: Scope) -> bool:
        """A registered scope grants `wanted`: the same type or `*` (v1 and v2 forms alike)."""
        return any(s.resource_type in (None, wanted.resource_type) for s in self.scopes)


def key_fits(key: Mapping[str, Any], alg: str) -> bool:
    """The JWK's type matches the algorithm (SMART: `kty` consistent with `alg`)."""
    if key.get("alg") not in (None, alg):
        return False
    if alg == "RS384":
        return key.get("kty") == "RSA"
    if alg == "ES384":
        return key.get("kty") == "EC" and key.get("crv") == "P-384"
    return False


def check_jwks_url(field_name: str, url: str) -> str:
    """https only: these keys decide who may export the source's data, so they must come over an
    authenticated channel. Plain http is allowed for 127.0.0.1/localhost, for local testing."""
    check_http_url(field_name, url)
    parts = urlsplit(url)
    if parts.scheme != "https" and parts.hostname not in LOOPBACK_HOSTS:
        raise ValidationError(field_name, "must be an https URL (http only on 127.0.0.1 or localhost)")
    return url


def parse_smart_clients(text: str) -> tuple[SmartClient, ...]:
    """Every registration of the SMART_CLIENTS JSON text; a ValidationError's field names the bad
    entry by its index, e.g. `[1] (client 'warehouse').jwks_url` (or is SMART_CLIENTS itself)."""
    try:
        entries = json.loads(text)
    except ValueError:
        raise ValidationError("SMART_CLIENTS", "is not valid JSON") from None
    if not isinstance(entries, list):
        raise ValidationError("SMART_CLIENTS", "must be a JSON list of client registrations")
    clients: list[SmartClient] = []
    for index, entry in enumerate(entries):
        client = _parse_entry(f"[{index}]", entry)
        if any(c.client_id == client.client_id for c in clients):
            raise ValidationError(f"[{index}]", f"client_id {client.client_id!r} is registered twice")
        clients.append(client)
    return tuple(clients)


def _parse_entry(where: str, entry: Any) -> SmartClient:
    if not isinstance(entry, Mapping):
        raise ValidationError(where, "must be a JSON object")
    client_id = entry.get("client_id")
    if not isinstance(client_id, str) or not _CLIENT_ID.match(client_id):
        raise ValidationError(f"{where}.client_id", "must be 1..128 printable ASCII characters, no spaces")
    where = f"{where} (client {client_id!r})"
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ValidationError(
            where, f"unknown field(s) {', '.join(unknown)} (known: {', '.join(sorted(_FIELDS))})"
        )
    if ("jwks" in entry) == ("jwks_url" in entry):
        raise ValidationError(where, "needs exactly one of jwks (inline keys) and jwks_url")
    jwks_url = entry.get("jwks_url")
    if jwks_url is not None:
        if not isinstance(jwks_url, str):
            raise ValidationError(f"{where}.jwks_url", "must be a URL")
        check_jwks_url(f"{where}.jwks_url", jwks_url)
    jwks = entry.get("jwks")
    if jwks is not None:
        jwks = _check_jwks(f"{where}.jwks", jwks)
    return SmartClient(client_id, _parse_scopes(f"{where}.scopes", entry.get("scopes")), jwks, jwks_url)


def _parse_scopes(where: str, scopes: Any) -> tuple[Scope, ...]:
    if not isinstance(scopes, list) or not scopes or not all(isinstance(s, str) for s in scopes):
        raise ValidationError(where, "must be a non-empty list of scopes such as system/*.read")
    parsed: list[Scope] = []
    for text in scopes:
        scope = parse_scope(text)
        if scope is None:
            raise ValidationError(
                where,
                f"{text!r} is not a supported scope (system/*.read, system/*.rs, system/<Type>.read or .rs)",
            )
        parsed.append(scope)
    return tuple(parsed)


def _check_jwks(where: str, jwks: Any) -> dict[str, Any]:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list) or not keys:
        raise ValidationError(where, 'must be a JWK Set {"keys": [...]} with at least one key')
    for i, key in enumerate(keys):
        _check_public_key(f"{where}.keys[{i}]", key)
    return {"keys": [dict(k) for k in keys]}


def _check_public_key(where: str, key: Any) -> None:
    if not isinstance(key, Mapping) or not isinstance(key.get("kid"), str) or not key["kid"]:
        raise ValidationError(where, "must be a JWK with a kid (the assertion's kid selects the key)")
    if "d" in key:
        raise ValidationError(where, "holds a private key; register the public key only")
    fits = [alg for alg in ALGORITHMS if key_fits(key, alg)]
    if not fits:
        raise ValidationError(where, "must be an RSA key (RS384) or an EC P-384 key (ES384)")
    try:
        jwt.PyJWK(dict(key), fits[0])
    except (jwt.PyJWTError, ValueError, TypeError) as exc:
        raise ValidationError(where, f"is not a usable public key ({type(exc).__name__})") from None


def usable_keys(keys: Iterable[Any], kid: str, alg: str) -> Sequence[jwt.PyJWK]:
    """The keys of a JWK Set's `keys` list with this `kid` that fit `alg`; unusable keys are skipped."""
    found: list[jwt.PyJWK] = []
    for key in keys:
        if not isinstance(key, Mapping) or key.get("kid") != kid or "d" in key or not key_fits(key, alg):
            continue
        try:
            found.append(jwt.PyJWK(dict(key), alg))
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
    return found
