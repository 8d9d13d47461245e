"""SMART Backend Services for the FHIR front door: the token endpoint, access tokens, and who may
see what. Framework-free (never imports azure.functions); clients come from `smart_clients`.

    token request (form) -> `SmartAuth.token` -> `TokenAnswer` (200 token | RFC 6749 error)
      1. grant_type=client_credentials, client_assertion_type=jwt-bearer, client_assertion, scope
      2. the assertion (private_key_jwt): alg RS384|ES384, its `kid` picks a key of the client
         its `iss` names (inline JWKS, or fetched from the registered jwks_url by `fetch_jwks`);
         iss == sub, aud == the token URL, exp at most 5 minutes ahead, a jti. Every failure is
         `invalid_client` (RFC 7523 §3.2: a bad client assertion is a client-authentication error)
      3. every requested scope is covered by the client's registered ones, else `invalid_scope`
      4. the jti is recorded in the `JtiStore`; a second use, on any instance, is refused
      5. an HS256 access token (300 s) signed with the service's key from the secret store
    front-door request -> `SmartAuth.authenticate` -> `Principal` (a bearer token, or one of the
      FHIR_FRONTDOOR_KEYS), else `Unauthorized`
    `Principal` + kick-off types -> `exportable_types`; + a job's labels -> `may_see`

Answers and logs never contain a token, an assertion or a key.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import parse_qsl

import httpx
import jwt
from jwt.types import Options

from shared.bulkdata import BulkDataError, Issue
from shared.errors import TransientError, ValidationError
from shared.jti_store import JtiStore
from shared.outbound import OutboundRefused
from shared.secrets.base import SecretNotFoundError, SecretStore
from shared.smart_clients import ALGORITHMS, Scope, SmartClient, check_jwks_url, parse_scope, usable_keys

__all__ = [
    "ASSERTION_TYPE",
    "CLIENT_LABEL",
    "KEY_HOLDER",
    "OAuthError",
    "Principal",
    "SmartAuth",
    "TokenAnswer",
    "Unauthorized",
    "exportable_types",
    "fetch_jwks",
    "job_labels",
    "may_see",
    "smart_configuration",
]

log = logging.getLogger(__name__)

ASSERTION_TYPE: Final = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
TOKEN_LIFETIME_S: Final = 300  # the lifetime SMART recommends
MAX_ASSERTION_AHEAD_S: Final = 300  # SMART: an assertion's exp is at most five minutes ahead
CLOCK_SKEW_S: Final = 30  # tolerated difference between a client's clock and ours
SIGNING_KEY_SECRET: Final = "smart-access-token-signing-key"  # one name: every instance shares it
KEY_CACHE_S: Final = 300  # a rotated signing key is picked up within this long
KEY_REREAD_S: Final = 5  # at most one re-read per this long when a signature fails (see _verify)
JWKS_CACHE_S: Final = 60
MAX_JWKS_BYTES: Final = 64 * 1024
CLIENT_LABEL: Final = "smart_client"  # the job label naming the SMART client that kicked it off
SCOPES_SUPPORTED: Final = ("system/*.read", "system/*.rs")
# Our access tokens are read by this service only; a fixed issuer and audience say so, and the
# RFC 9068 `typ` keeps any other kind of JWT from passing for one.
_ISSUER: Final = "bulk-export/smart"
_AUDIENCE: Final = "bulk-export/fhir"
_TOKEN_TYP: Final = "at+jwt"
_FORM: Final = "application/x-www-form-urlencoded"
_MAX_FORM_BYTES: Final = 16 * 1024
# Time claims are checked here with the injected clock, so PyJWT only checks the signature.
_SIGNATURE_ONLY: Final[Options] = {
    "verify_exp": False,
    "verify_nbf": False,
    "verify_iat": False,
    "verify_aud": False,
    "verify_iss": False,
}
_UNSAFE_TEXT: Final = re.compile(r"[^\x20-\x21\x23-\x5b\x5d-\x7e]")  # RFC 6749 error_description


class OAuthError(Exception):
    """A refused token request (RFC 6749 §5.2): HTTP status, `error` code, description."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.description = _UNSAFE_TEXT.sub("?", description)


def _invalid_client(description: str) -> OAuthError:
    return OAuthError(401, "invalid_client", description)


def _invalid_request(description: str) -> OAuthError:
    return OAuthError(400, "invalid_request", description)


class Unauthorized(Exception):
    """A front-door request without valid credentials: 401 with `challenge` as WWW-Authenticate."""

    def __init__(self, description: str, *, invalid_token: bool = False) -> None:
        super().__init__(description)
        self.challenge = 'Bearer error="invalid_token"' if invalid_token else "Bearer"


@dataclass(frozen=True)
class TokenAnswer:
    status: int
    body: dict[str, Any]
    # RFC 6749 §5.1: token answers must not be cached.
    headers: Mapping[str, str] = field(
        default_factory=lambda: {"Cache-Control": "no-store", "Pragma": "no-cache"}
    )


@dataclass(frozen=True)
class Principal:
    """Who a front-door request acts for: a SMART client, or (client_id None) a key holder."""

    client_id: str | None
    resource_types: frozenset[str] | None = None  # None: every type

    @property
    def by_token(self) -> bool:
        return self.client_id is not None

    def allows(self, resource_type: str) -> bool:
        return self.resource_types is None or resource_type in self.resource_types


KEY_HOLDER: Final = Principal(None)  # the service's own clients, with a FHIR_FRONTDOOR_KEYS key


def fetch_jwks(http: httpx.Client, url: str) -> Sequence[Any]:
    """The `keys` of the JWK Set at a registered jwks_url: the token endpoint's only outbound call,
    through `http`, the service's client (`shared.deps`: it connects only where OUTBOUND_ALLOW
    allows). No redirects: one could swap in another host's keys."""
    try:
        check_jwks_url("jwks_url", url)
    except ValidationError as exc:
        raise _invalid_client(f"the client's {exc}") from None
    try:
        with http.stream("GET", url, headers={"Accept": "application/json"}, follow_redirects=False) as r:
            if r.status_code != 200:
                raise _invalid_client(f"the client's jwks_url answered HTTP {r.status_code}")
            body = b""
            for chunk in r.iter_bytes():
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise _invalid_client(f"the client's JWKS is larger than {MAX_JWKS_BYTES} bytes")
    except httpx.HTTPError as exc:
        raise _invalid_client(f"the client's jwks_url could not be read ({type(exc).__name__})") from exc
    except OutboundRefused as exc:
        # The operator's registration names a host the policy refuses: say so in the log, and
        # not to the caller, where it would map the service's network.
        log.warning("SMART jwks_url %s refused by the outbound policy: %s", url, exc)
        raise _invalid_client(
            "the client's jwks_url is not allowed by this server's outbound policy"
        ) from None
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    keys = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(keys, list):
        raise _invalid_client('the client\'s jwks_url does not serve a JWK Set {"keys": [...]}')
    return keys


class SmartAuth:
    """The token endpoint and the front door's authentication; one per process (`shared.deps`)."""

    def __init__(
        self,
        clients: Sequence[SmartClient],
        *,
        secrets: SecretStore,
        jti_store: JtiStore,
        fetch: Callable[[str], Sequence[Any]],
        frontdoor_keys: Sequence[str] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clients = {c.client_id: c for c in clients}
        self._secrets = secrets
        self._jti = jti_store
        self._fetch = fetch
        self._keys = tuple(frontdoor_keys)
        self._clock = clock
        self._lock = threading.Lock()
        self._jwks: dict[str, tuple[float, Sequence[Any]]] = {}
        self._signing: tuple[str, float] | None = None

    # --- the token endpoint -----------------------------------------------------------------

    def token(self, body: bytes, content_type: str | None, token_url: str) -> TokenAnswer:
        """The answer to a token request POSTed to `token_url`."""
        try:
            return TokenAnswer(200, self._token(_form(body, content_type), token_url))
        except OAuthError as exc:
            log.info("SMART token request refused (%s): %s", exc.error, exc.description)
            return TokenAnswer(exc.status, {"error": exc.error, "error_description": exc.description})
        except TransientError as exc:
            log.warning("SMART token request failed for now: %s", exc)
            body_ = {"error": "temporarily_unavailable", "error_description": "try again shortly"}
            return TokenAnswer(503, body_, {"Cache-Control": "no-store", "Retry-After": "5"})

    def _token(self, form: Mapping[str, str], token_url: str) -> dict[str, Any]:
        grant = form.get("grant_type")
        if not grant:
            raise _invalid_request("grant_type is required")
        if grant != "client_credentials":
            raise OAuthError(400, "unsupported_grant_type", "only grant_type=client_credentials is supported")
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise _invalid_request(f"client_assertion_type must be {ASSERTION_TYPE} (private_key_jwt)")
        assertion = form.get("client_assertion")
        if not assertion:
            raise _invalid_request("client_assertion is required")
        requested = (form.get("scope") or "").split()
        if not requested:
            raise _invalid_request("scope is required, e.g. system/*.read")
        client, claims = self._verify_assertion(assertion, token_url)
        if form.get("client_id") not in (None, client.client_id):
            raise _invalid_client("client_id does not match the assertion's iss")
        scopes = _grant(client, requested)
        if not self._jti.remember(client.client_id, claims["jti"], float(claims["exp"])):
            raise _invalid_client("this assertion's jti was used before; sign a new assertion per request")
        text = " ".join(s.text for s in scopes)
        token = self._issue(client.client_id, text)
        log.info("SMART access token issued to client %s (scope %s)", client.client_id, text)
        return {"access_token": token, "token_type": "bearer", "expires_in": TOKEN_LIFETIME_S, "scope": text}

    def _verify_assertion(self, assertion: str, token_url: str) -> tuple[SmartClient, dict[str, Any]]:
        try:
            header = jwt.get_unverified_header(assertion)
            unverified = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_client("client_assertion is not a signed JWT") from None
        alg, kid, iss = header.get("alg"), header.get("kid"), unverified.get("iss")
        if alg not in ALGORITHMS:
            raise _invalid_client(
                f"the assertion is signed with {alg!r}; this server accepts RS384 and ES384"
            )
        if not isinstance(kid, str) or not kid:
            raise _invalid_client("the assertion's header has no kid")
        client = self._clients.get(iss) if isinstance(iss, str) else None
        if client is None:
            raise _invalid_client("the assertion's iss is not a registered client id")
        claims: dict[str, Any] | None = None
        for key in self._keys_for(client, header.get("jku"), kid, str(alg)):
            try:
                claims = jwt.decode(assertion, key, algorithms=[str(alg)], options=_SIGNATURE_ONLY)
                break
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise _invalid_client(f"the assertion cannot be verified ({type(exc).__name__})") from None
        if claims is None:
            raise _invalid_client(f"the assertion's signature does not verify with key {kid!r} of the client")
        _check_assertion_claims(client, claims, token_url, self._clock())
        return client, claims

    def _keys_for(self, client: SmartClient, jku: Any, kid: str, alg: str) -> Sequence[jwt.PyJWK]:
        if client.jwks is not None:
            if jku is not None:
                raise _invalid_client("the assertion's jku is not registered for this client")
            keys = usable_keys(client.jwks["keys"], kid, alg)
        else:
            assert client.jwks_url is not None  # exactly one of jwks and jwks_url (smart_clients)
            if jku is not None and jku != client.jwks_url:
                raise _invalid_client("the assertion's jku is not the client's registered jwks_url")
            keys = usable_keys(self._key_set(client.jwks_url), kid, alg)
            if not keys:  # perhaps a new key: look again, at most once per KEY_REREAD_S
                keys = usable_keys(self._key_set(client.jwks_url, max_age=KEY_REREAD_S), kid, alg)
        if not keys:
            raise _invalid_client(f"the client has no {alg} key with kid {kid!r}")
        return keys

    def _key_set(self, url: str, *, max_age: float = JWKS_CACHE_S) -> Sequence[Any]:
        now = self._clock()
        with self._lock:
            cached = self._jwks.get(url)
        if cached is not None and now - cached[0] < max_age:
            return cached[1]
        keys = self._fetch(url)
        with self._lock:
            self._jwks[url] = (now, keys)
        return keys

    # --- access tokens ----------------------------------------------------------------------

    def _issue(self, client_id: str, scope: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": _ISSUER,
            "aud": _AUDIENCE,
            "sub": client_id,
            "scope": scope,
            "iat": now,
            "exp": now + TOKEN_LIFETIME_S,
            "jti": secrets.token_hex(16),
        }
        return jwt.encode(claims, self._signing_key(), algorithm="HS256", headers={"typ": _TOKEN_TYP})

    def verify_access_token(self, token: str) -> Principal:
        """The principal of one of our access tokens; `Unauthorized` for anything else."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized(
                "the bearer token is not an access token of this server", invalid_token=True
            ) from None
        if header.get("alg") != "HS256" or header.get("typ") != _TOKEN_TYP:
            raise Unauthorized("the bearer token is not an access token of this server", invalid_token=True)
        claims = self._verify(token)
        if claims.get("iss") != _ISSUER or claims.get("aud") != _AUDIENCE:
            raise Unauthorized("the bearer token was not issued for this server", invalid_token=True)
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= self._clock():
            raise Unauthorized("the access token has expired; request a new one", invalid_token=True)
        client_id = claims.get("sub")
        if not isinstance(client_id, str) or client_id not in self._clients:
            raise Unauthorized("the access token's client is not registered", invalid_token=True)
        scopes = [parse_scope(s) for s in str(claims.get("scope") or "").split()]
        if not scopes or any(s is None for s in scopes):
            raise Unauthorized("the access token carries no usable scope", invalid_token=True)
        types = {s.resource_type for s in scopes if s is not None}
        return Principal(client_id, None if None in types else frozenset(t for t in types if t is not None))

    def _verify(self, token: str) -> dict[str, Any]:
        for attempt in range(2):
            try:
                return jwt.decode(
                    token,
                    self._signing_key(reread=attempt > 0),
                    algorithms=["HS256"],
                    options=_SIGNATURE_ONLY,
                )
            except jwt.InvalidSignatureError:
                # Perhaps signed with a key this instance has not seen yet: rotated, or written by
                # another instance that raced this one to create it on first use.
                continue
            except jwt.PyJWTError:
                break
        raise Unauthorized("the bearer token's signature does not verify", invalid_token=True)

    def _signing_key(self, *, reread: bool = False) -> str:
        now = self._clock()
        with self._lock:
            cached = self._signing
        if cached is not None and now - cached[1] < (KEY_REREAD_S if reread else KEY_CACHE_S):
            return cached[0]
        try:
            value = self._secrets.get(SIGNING_KEY_SECRET)
        except SecretNotFoundError:
            self._secrets.set(SIGNING_KEY_SECRET, secrets.token_urlsafe(48))
            log.info("created the SMART access token signing key (secret %s)", SIGNING_KEY_SECRET)
            # Read back: when instances race on first use, the last write wins for everyone.
            value = self._secrets.get(SIGNING_KEY_SECRET)
        with self._lock:
            self._signing = (value, now)
        return value

    # --- the front door ---------------------------------------------------------------------

    def authenticate(self, headers: Mapping[str, str], query: Mapping[str, str]) -> Principal:
        """A bearer token in `Authorization`, else a key in `x-functions-key` or `?code=`.

        `headers` must be case-insensitive with lower-case names (the Functions SDK's are)."""
        authorization = headers.get("authorization")
        if authorization is not None:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise Unauthorized(
                    "the Authorization header must be 'Bearer <access token>'", invalid_token=True
                )
            return self.verify_access_token(token.strip())
        key = headers.get("x-functions-key") or query.get("code")
        if key:
            # Every key is compared (no short-circuit), each in constant time.
            if any([hmac.compare_digest(key.encode(), k.encode()) for k in self._keys]):
                return KEY_HOLDER
            raise Unauthorized("the key is not valid for the FHIR front door")
        raise Unauthorized(
            "this endpoint needs an access token (Authorization: Bearer ...; SMART Backend Services, "
            "see .well-known/smart-configuration)"
        )


def _form(body: bytes, content_type: str | None) -> dict[str, str]:
    if (content_type or "").split(";")[0].strip().lower() != _FORM:
        raise _invalid_request(f"the token request must be a form (Content-Type: {_FORM})")
    if len(body) > _MAX_FORM_BYTES:
        raise _invalid_request(f"the token request is larger than {_MAX_FORM_BYTES} bytes")
    try:
        pairs = parse_qsl(body.decode("ascii"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise _invalid_request("the form must be URL-encoded ASCII") from None
    form: dict[str, str] = {}
    for name, value in pairs:
        if name in form:  # RFC 6749 §3.2: parameters must not be repeated
            raise _invalid_request(f"parameter {name} is given more than once")
        form[name] = value
    return form


def _check_assertion_claims(
    client: SmartClient, claims: Mapping[str, Any], token_url: str, now: float
) -> None:
    if claims.get("sub") != client.client_id:
        raise _invalid_client("the assertion's sub must equal its iss (the client id)")
    aud = claims.get("aud")
    if token_url not in ([aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []):
        raise _invalid_client(f"the assertion's aud must be this token endpoint, {token_url}")
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise _invalid_client("the assertion has no exp")
    if exp <= now - CLOCK_SKEW_S:
        raise _invalid_client("the assertion has expired")
    if exp > now + MAX_ASSERTION_AHEAD_S + CLOCK_SKEW_S:
        raise _invalid_client("the assertion's exp is more than 5 minutes ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, int | float) and nbf > now + CLOCK_SKEW_S:
        raise _invalid_client("the assertion is not valid yet (nbf)")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti:
        raise _invalid_client("the assertion has no jti")


def _grant(client: SmartClient, requested: Sequence[str]) -> tuple[Scope, ...]:
    granted: list[Scope] = []
    for text in dict.fromkeys(requested):
        scope = parse_scope(text)
        if scope is None:
            raise OAuthError(
                400,
                "invalid_scope",
                f"{text} is not a scope this server grants (system/*.read, system/*.rs, "
                "system/<Type>.read or .rs)",
            )
        if not client.covers(scope):
            raise OAuthError(
                400, "invalid_scope", f"{text} is not among the scopes registered for this client"
            )
        granted.append(scope)
    return tuple(granted)


# --- what a principal may do ----------------------------------------------------------------------


def exportable_types(
    principal: Principal, offered: Sequence[str], *, types: Sequence[str] = (), filtered: Sequence[str] = ()
) -> tuple[str, ...]:
    """The `offered` types (what the source can search) the principal may export.

    A requested `_type`, or a `_typeFilter`'s type, outside the principal's scopes is refused with
    403; without `_type`, the export is limited to the allowed types."""
    if principal.resource_types is None:
        return tuple(offered)
    issues = [
        Issue("forbidden", f"{name}: the access token's scopes do not cover {t}", name)
        for name, listed in (("_type", types), ("_typeFilter", filtered))
        for t in dict.fromkeys(listed)
        if not principal.allows(t)
    ]
    if issues:
        raise BulkDataError(403, *issues)
    allowed = tuple(t for t in offered if principal.allows(t))
    if not types and not allowed:
        raise BulkDataError(
            403, Issue("forbidden", "the access token's scopes cover none of the types this server exports")
        )
    return allowed


def job_labels(principal: Principal) -> dict[str, str]:
    """The labels a kick-off adds to its job: the SMART client that owns it."""
    return {CLIENT_LABEL: principal.client_id} if principal.client_id is not None else {}


def may_see(principal: Principal, labels: Mapping[str, Any]) -> bool:
    """Key holders see every front-door job; a SMART client only the jobs it kicked off."""
    return principal.client_id is None or labels.get(CLIENT_LABEL) == principal.client_id


def smart_configuration(token_url: str) -> dict[str, Any]:
    """The `.well-known/smart-configuration` document (SMART App Launch 2, backend services)."""
    return {
        "token_endpoint": token_url,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
        "scopes_supported": list(SCOPES_SUPPORTED),
        "capabilities": ["client-confidential-asymmetric"],
    }
