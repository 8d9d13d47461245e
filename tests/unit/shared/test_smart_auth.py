"""SMART Backend Services logic, fast: the token endpoint's checks, access tokens, the front door's
authentication and scope narrowing, with a fake clock, fake secrets and the in-memory jti store."""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import pytest

from shared.bulkdata import BulkDataError
from shared.errors import TransientError
from shared.jti_store import MemoryJtiStore
from shared.secrets.memory import MemorySecretStore
from shared.smart_auth import (
    ASSERTION_TYPE,
    KEY_HOLDER,
    SIGNING_KEY_SECRET,
    OAuthError,
    Principal,
    SmartAuth,
    TokenAnswer,
    Unauthorized,
    exportable_types,
    fetch_jwks,
    job_labels,
    may_see,
    smart_configuration,
)
from shared.smart_clients import parse_smart_clients
from tests.support.bulk_client import ClientKey

pytestmark = pytest.mark.unit

TOKEN_URL = "https://bulk.example/api/fhir/auth/token"
FORM = "application/x-www-form-urlencoded"
JWKS_URL = "https://keys.example/warehouse.json"
FRONTDOOR_KEY = "frontdoor-key-0123456789abcdef"
RSA, EC, OTHER_RSA = ClientKey.rsa("rsa-1"), ClientKey.ec("ec-1"), ClientKey.rsa("rsa-1")


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class FakeJwksHost:
    def __init__(self, jwks: dict[str, Any]) -> None:
        self.jwks = jwks
        self.fetches: list[str] = []

    def __call__(self, url: str) -> Sequence[Any]:
        self.fetches.append(url)
        return list(self.jwks["keys"])


class BrokenJtiStore:
    def remember(self, client_id: str, jti: str, expires_at: float) -> bool:
        raise TransientError("record assertion id: storage unreachable")


REGISTRATIONS: list[dict[str, Any]] = [
    {"client_id": "analytics", "jwks": RSA.jwks(), "scopes": ["system/*.read"]},
    {"client_id": "warehouse", "jwks_url": JWKS_URL, "scopes": ["system/*.rs"]},
    {"client_id": "narrow", "jwks": RSA.jwks(), "scopes": ["system/Patient.read", "system/Encounter.rs"]},
]


class World:
    """One SmartAuth with its fakes; `other()` is a second instance on the same secrets."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.secrets = MemorySecretStore()
        self.jti = MemoryJtiStore()
        self.jwks_host = FakeJwksHost(EC.jwks())
        self.auth = self.other()

    def other(self, registrations: list[dict[str, Any]] = REGISTRATIONS, **kwargs: Any) -> SmartAuth:
        return SmartAuth(
            parse_smart_clients(json.dumps(registrations)),
            secrets=kwargs.pop("secrets", self.secrets),
            jti_store=kwargs.pop("jti_store", self.jti),
            fetch=self.jwks_host,
            frontdoor_keys=(FRONTDOOR_KEY,),
            clock=self.clock,
        )

    def assertion(self, client_id: str = "analytics", key: ClientKey = RSA, **changes: Any) -> str:
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": TOKEN_URL,
            "exp": int(self.clock.now + 240),
            "jti": uuid.uuid4().hex,
            **changes,
        }
        headers = {"typ": "JWT", "kid": key.kid, **changes.pop("headers", {})}
        claims = {k: v for k, v in claims.items() if v is not None and k != "headers"}
        return jwt.encode(claims, key.private, algorithm=key.alg, headers=headers)

    def token(self, assertion: str | None = None, scope: str = "system/*.read", **form: str) -> TokenAnswer:
        """POST a token request; `form` overrides a field, "<omit>" leaves it out."""
        fields = {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or self.assertion(),
            **form,
        }
        body = urlencode({k: v for k, v in fields.items() if v != "<omit>"}).encode()
        return self.auth.token(body, FORM, TOKEN_URL)


@pytest.fixture
def world() -> World:
    return World()


def refused(answer: TokenAnswer, status: int, error: str, description: str = "") -> None:
    assert (answer.status, answer.body["error"]) == (status, error), answer.body
    assert description in answer.body["error_description"]
    assert answer.headers["Cache-Control"] == "no-store"


# --- the token endpoint -------------------------------------------------------------------------


def test_an_rs384_assertion_with_inline_keys_gets_a_token(world: World) -> None:
    answer = world.token()

    assert answer.status == 200, answer.body
    assert answer.body["token_type"] == "bearer" and answer.body["expires_in"] == 300
    assert answer.body["scope"] == "system/*.read"
    assert answer.headers == {"Cache-Control": "no-store", "Pragma": "no-cache"}
    principal = world.auth.verify_access_token(answer.body["access_token"])
    assert principal == Principal("analytics", None) and principal.by_token


def test_an_es384_assertion_with_a_jwks_url_gets_a_token_and_the_keys_are_cached(world: World) -> None:
    for _ in range(2):
        answer = world.token(
            world.assertion("warehouse", EC), scope="system/Patient.rs system/Observation.read"
        )
        assert answer.status == 200, answer.body
    assert answer.body["scope"] == "system/Patient.rs system/Observation.read"
    assert world.jwks_host.fetches == [JWKS_URL]
    principal = world.auth.verify_access_token(answer.body["access_token"])
    assert principal.resource_types == frozenset({"Patient", "Observation"})
    world.clock.now += 61
    assert world.token(world.assertion("warehouse", EC), scope="system/*.rs").status == 200
    assert world.jwks_host.fetches == [JWKS_URL, JWKS_URL]


def test_a_new_key_at_the_jwks_url_is_found_by_fetching_again(world: World) -> None:
    assert world.token(world.assertion("warehouse", EC)).status == 200
    rotated = ClientKey.ec("ec-2")
    world.jwks_host.jwks = {"keys": [*EC.jwks()["keys"], rotated.public_jwk()]}

    refused(
        world.token(world.assertion("warehouse", rotated)),
        401,
        "invalid_client",
        "no ES384 key with kid 'ec-2'",
    )
    world.clock.now += 6  # a kid miss fetches again, at most once every 5 seconds
    assert world.token(world.assertion("warehouse", rotated)).status == 200
    assert len(world.jwks_host.fetches) == 2


def forged(world: World, alg: str) -> str:
    claims = {
        "iss": "analytics",
        "sub": "analytics",
        "aud": TOKEN_URL,
        "exp": int(world.clock.now + 60),
        "jti": "x",
    }
    if alg == "none":
        return jwt.encode(claims, None, algorithm="none", headers={"kid": "rsa-1"})  # type: ignore[arg-type]
    return jwt.encode(
        claims,
        "a-shared-secret-long-enough-for-any-hmac-algorithm-0123456789",
        algorithm=alg,
        headers={"kid": "rsa-1"},
    )


@pytest.mark.parametrize(
    ("make", "description"),
    [
        (lambda w: w.assertion(key=OTHER_RSA), "signature does not verify with key 'rsa-1'"),
        (lambda w: w.assertion(exp=int(w.clock.now - 31)), "has expired"),
        (lambda w: w.assertion(exp=int(w.clock.now + 331)), "more than 5 minutes ahead"),
        (lambda w: w.assertion(exp=None), "has no exp"),
        (lambda w: w.assertion(jti=None), "has no jti"),
        (lambda w: w.assertion(aud="https://elsewhere.example/token"), f"aud must be this token endpoint, {TOKEN_URL}"),
        (lambda w: w.assertion(aud=[TOKEN_URL + "/"]), "aud must be"),
        (lambda w: w.assertion(sub="narrow"), "sub must equal its iss"),
        (lambda w: w.assertion("nobody"), "iss is not a registered client id"),
        (lambda w: w.assertion(nbf=int(w.clock.now + 120)), "not valid yet"),
        (lambda w: w.assertion(headers={"kid": "unknown"}), "no RS384 key with kid 'unknown'"),
        (lambda w: w.assertion(headers={"jku": "https://attacker.example/jwks"}), "jku is not registered"),
        (lambda w: w.assertion("warehouse", EC, headers={"jku": "https://attacker.example/jwks"}), "jku is not the client's registered jwks_url"),
        (lambda w: w.assertion("analytics", EC), "no ES384 key with kid 'ec-1'"),
        (lambda w: forged(w, "none"), "signed with 'none'"),
        (lambda w: forged(w, "HS256"), "signed with 'HS256'"),
        (lambda w: forged(w, "HS384"), "signed with 'HS384'"),
        (lambda w: "not-a-jwt", "not a signed JWT"),
    ],
    ids=[
        "bad-signature", "expired", "exp-too-far", "no-exp", "no-jti", "wrong-aud", "aud-list-without-us",
        "sub-not-iss", "unknown-client", "nbf-ahead", "unknown-kid", "jku-inline", "jku-other-url",
        "key-type-mismatch", "alg-none", "alg-hs256", "alg-hs384", "garbage",
    ],
)  # fmt: skip
def test_every_bad_assertion_is_invalid_client(world: World, make: Any, description: str) -> None:
    refused(world.token(make(world)), 401, "invalid_client", description)


def test_an_assertion_within_the_clock_skew_is_accepted(world: World) -> None:
    assert world.token(world.assertion(exp=int(world.clock.now + 320))).status == 200
    assert world.token(world.assertion(exp=int(world.clock.now - 20))).status == 200


def test_a_replayed_jti_is_refused_on_every_instance(world: World) -> None:
    assertion = world.assertion()
    assert world.token(assertion).status == 200
    refused(world.token(assertion), 401, "invalid_client", "jti was used before")
    world.auth = world.other()  # another instance, the same (shared) store
    refused(world.token(assertion), 401, "invalid_client", "jti was used before")
    # The same jti from another client is that client's own.
    assert (
        world.token(
            world.assertion("narrow", jti=jwt.decode(assertion, options={"verify_signature": False})["jti"]),
            scope="system/Patient.read",
        ).status
        == 200
    )


def test_a_refused_assertion_does_not_use_up_its_jti(world: World) -> None:
    assertion = world.assertion()
    refused(world.token(assertion, scope="system/*.write"), 400, "invalid_scope")
    assert world.token(assertion).status == 200


@pytest.mark.parametrize(
    ("form", "status", "error", "description"),
    [
        ({"grant_type": "<omit>"}, 400, "invalid_request", "grant_type is required"),
        ({"grant_type": "authorization_code"}, 400, "unsupported_grant_type", "client_credentials"),
        ({"client_assertion_type": "<omit>"}, 400, "invalid_request", "client_assertion_type must be"),
        ({"client_assertion_type": "urn:other"}, 400, "invalid_request", "client_assertion_type must be"),
        ({"client_assertion": ""}, 400, "invalid_request", "client_assertion is required"),
        ({"scope": ""}, 400, "invalid_request", "scope is required"),
        ({"client_id": "narrow"}, 401, "invalid_client", "client_id does not match"),
    ],
)
def test_malformed_token_requests(
    world: World, form: dict[str, str], status: int, error: str, description: str
) -> None:
    refused(world.token(**form), status, error, description)


def test_the_form_must_be_a_form_without_repeats(world: World) -> None:
    refused(world.auth.token(b"{}", "application/json", TOKEN_URL), 400, "invalid_request", "must be a form")
    body = b"grant_type=client_credentials&grant_type=client_credentials"
    refused(
        world.auth.token(body, FORM + "; charset=utf-8", TOKEN_URL), 400, "invalid_request", "more than once"
    )
    refused(world.auth.token(b"\xff", FORM, TOKEN_URL), 400, "invalid_request", "ASCII")


@pytest.mark.parametrize(
    ("client_id", "scope", "granted"),
    [
        ("analytics", "system/Patient.read", True),
        ("analytics", "system/Patient.rs system/*.rs", True),
        ("narrow", "system/Patient.rs system/Encounter.read", True),
        ("narrow", "system/Observation.read", False),
        ("narrow", "system/*.read", False),
        ("analytics", "system/*.write", False),
        ("analytics", "patient/*.read", False),
    ],
)
def test_requested_scopes_must_be_covered_by_the_registration(
    world: World, client_id: str, scope: str, granted: bool
) -> None:
    answer = world.token(world.assertion(client_id), scope=scope)
    if granted:
        assert answer.status == 200 and answer.body["scope"] == scope
    else:
        refused(answer, 400, "invalid_scope")


def test_a_storage_outage_is_a_503_not_a_refusal(world: World) -> None:
    world.auth = world.other(jti_store=BrokenJtiStore())
    answer = world.token()
    assert (answer.status, answer.body["error"]) == (503, "temporarily_unavailable")
    assert "storage" not in json.dumps(answer.body)


def test_descriptions_keep_to_the_characters_rfc_6749_allows() -> None:
    assert OAuthError(400, "invalid_scope", 'a "quoted" \\ scope é').description == "a ?quoted? ? scope ?"


# --- access tokens ------------------------------------------------------------------------------


def test_the_signing_key_is_made_once_and_shared_by_every_instance(world: World) -> None:
    token = world.token().body["access_token"]
    assert set(world.secrets.values) == {SIGNING_KEY_SECRET}
    key = world.secrets.values[SIGNING_KEY_SECRET]
    assert len(key) >= 64
    other = world.other()
    assert other.verify_access_token(token).client_id == "analytics"
    assert world.secrets.values[SIGNING_KEY_SECRET] == key


def test_the_key_is_read_from_the_store_only_now_and_then(world: World) -> None:
    token = world.token().body["access_token"]
    reads = world.secrets.reads
    for _ in range(5):
        world.auth.verify_access_token(token)
    assert world.secrets.reads == reads


def test_a_key_another_instance_wrote_is_picked_up_when_a_signature_fails(world: World) -> None:
    first = world.token().body["access_token"]
    # Another instance raced this one on first use and its key won: its tokens must verify here.
    racer_secrets = MemorySecretStore()
    mine, world.auth = world.auth, world.other(secrets=racer_secrets)
    theirs = world.token().body["access_token"]
    world.auth = mine
    world.secrets.values[SIGNING_KEY_SECRET] = racer_secrets.values[SIGNING_KEY_SECRET]
    world.clock.now += 6
    assert world.auth.verify_access_token(theirs).client_id == "analytics"
    with pytest.raises(Unauthorized, match="signature does not verify"):
        world.auth.verify_access_token(first)  # the losing key is gone for everyone


def test_an_access_token_lives_300_seconds(world: World) -> None:
    token = world.token().body["access_token"]
    world.clock.now += 299
    world.auth.verify_access_token(token)
    world.clock.now += 1
    with pytest.raises(Unauthorized, match="expired") as caught:
        world.auth.verify_access_token(token)
    assert caught.value.challenge == 'Bearer error="invalid_token"'


def tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "system/*.read system/Secret.read"
    forged_payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged_payload}.{signature}"


def test_tampered_foreign_and_deregistered_tokens_are_refused(world: World) -> None:
    token = world.token().body["access_token"]
    with pytest.raises(Unauthorized, match="signature does not verify"):
        world.auth.verify_access_token(tampered(token))
    foreign = jwt.encode(
        {"sub": "analytics", "scope": "system/*.read", "exp": int(world.clock.now + 60)},
        RSA.private,
        algorithm="RS384",
    )
    with pytest.raises(Unauthorized, match="not an access token of this server"):
        world.auth.verify_access_token(foreign)
    with pytest.raises(Unauthorized, match="not an access token of this server"):
        world.auth.verify_access_token("garbage")
    # An assertion is no access token, even one the service would accept at its token endpoint.
    with pytest.raises(Unauthorized, match="not an access token of this server"):
        world.auth.verify_access_token(world.assertion())
    deregistered = world.other(registrations=REGISTRATIONS[1:])
    with pytest.raises(Unauthorized, match="client is not registered"):
        deregistered.verify_access_token(token)


# --- the front door -------------------------------------------------------------------------------


def test_a_bearer_token_authenticates_as_its_client(world: World) -> None:
    token = world.token(world.assertion("narrow"), scope="system/Patient.read system/Encounter.rs").body[
        "access_token"
    ]
    principal = world.auth.authenticate({"authorization": f"Bearer {token}"}, {})
    assert principal == Principal("narrow", frozenset({"Patient", "Encounter"}))
    assert world.auth.authenticate({"authorization": f"bearer   {token} "}, {}).client_id == "narrow"


def test_a_frontdoor_key_authenticates_as_a_key_holder(world: World) -> None:
    assert world.auth.authenticate({"x-functions-key": FRONTDOOR_KEY}, {}) is KEY_HOLDER
    assert world.auth.authenticate({}, {"code": FRONTDOOR_KEY}) is KEY_HOLDER
    assert not KEY_HOLDER.by_token and KEY_HOLDER.allows("Anything")


@pytest.mark.parametrize(
    ("headers", "query", "message", "challenge"),
    [
        ({}, {}, "needs an access token", "Bearer"),
        ({"x-functions-key": "wrong-key-0123456789"}, {}, "key is not valid", "Bearer"),
        ({}, {"code": "wrong"}, "key is not valid", "Bearer"),
        (
            {"authorization": "Basic dXNlcjpwdw=="},
            {},
            "must be 'Bearer <access token>'",
            'Bearer error="invalid_token"',
        ),
        ({"authorization": "Bearer"}, {}, "must be 'Bearer <access token>'", 'Bearer error="invalid_token"'),
        ({"authorization": "Bearer nonsense"}, {}, "not an access token", 'Bearer error="invalid_token"'),
        # A bearer token is the credential when one is sent: a key beside it does not help.
        (
            {"authorization": "Bearer nonsense", "x-functions-key": FRONTDOOR_KEY},
            {},
            "not an access token",
            'Bearer error="invalid_token"',
        ),
    ],
)
def test_anything_else_is_unauthorized(
    world: World, headers: dict[str, str], query: dict[str, str], message: str, challenge: str
) -> None:
    with pytest.raises(Unauthorized, match=message) as caught:
        world.auth.authenticate(headers, query)
    assert caught.value.challenge == challenge


def test_without_frontdoor_keys_no_key_opens_the_door(world: World) -> None:
    keyless = SmartAuth((), secrets=world.secrets, jti_store=world.jti, fetch=world.jwks_host)
    with pytest.raises(Unauthorized):
        keyless.authenticate({"x-functions-key": FRONTDOOR_KEY}, {})


NARROW = Principal("narrow", frozenset({"Patient", "Encounter"}))
OFFERED = ("Patient", "Observation", "Encounter", "Condition")


def test_scopes_narrow_a_kickoff_without_type_to_the_allowed_types() -> None:
    assert exportable_types(NARROW, OFFERED) == ("Patient", "Encounter")
    assert exportable_types(NARROW, OFFERED, types=["Encounter"]) == ("Patient", "Encounter")
    assert exportable_types(Principal("analytics"), OFFERED) == OFFERED
    assert exportable_types(KEY_HOLDER, OFFERED, types=["Claim"]) == OFFERED


def test_a_type_outside_the_scopes_is_forbidden_naming_it() -> None:
    with pytest.raises(BulkDataError) as caught:
        exportable_types(NARROW, OFFERED, types=["Patient", "Observation", "Condition"], filtered=["Claim"])
    assert caught.value.status == 403
    assert [(i.code, i.expression, i.diagnostics) for i in caught.value.issues] == [
        ("forbidden", "_type", "_type: the access token's scopes do not cover Observation"),
        ("forbidden", "_type", "_type: the access token's scopes do not cover Condition"),
        ("forbidden", "_typeFilter", "_typeFilter: the access token's scopes do not cover Claim"),
    ]


def test_scopes_that_cover_nothing_the_source_offers_are_forbidden() -> None:
    with pytest.raises(BulkDataError, match="cover none of the types") as caught:
        exportable_types(Principal("x", frozenset({"Claim"})), OFFERED)
    assert caught.value.status == 403


def test_a_smart_client_sees_only_its_own_jobs() -> None:
    labels = {"frontdoor": "fhir", **job_labels(NARROW)}
    assert labels["smart_client"] == "narrow"
    assert may_see(NARROW, labels) and may_see(KEY_HOLDER, labels)
    assert not may_see(Principal("analytics"), labels)
    assert not may_see(NARROW, {"frontdoor": "fhir"})  # a key holder's job
    assert job_labels(KEY_HOLDER) == {}


def test_the_discovery_document() -> None:
    assert smart_configuration(TOKEN_URL) == {
        "token_endpoint": TOKEN_URL,
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384"],
        "scopes_supported": ["system/*.read", "system/*.rs"],
        "capabilities": ["client-confidential-asymmetric"],
    }


# --- fetching a JWKS ------------------------------------------------------------------------------


def jwks_client(handler: Any) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def test_fetch_jwks_reads_the_keys() -> None:
    with jwks_client(lambda request: httpx.Response(200, json=EC.jwks())) as http:
        assert fetch_jwks(http, JWKS_URL) == EC.jwks()["keys"]


@pytest.mark.parametrize(
    ("response", "description"),
    [
        (httpx.Response(302, headers={"Location": "https://attacker.example/jwks"}), "answered HTTP 302"),
        (httpx.Response(404), "answered HTTP 404"),
        (httpx.Response(200, content=b"not json"), "does not serve a JWK Set"),
        (httpx.Response(200, json={"keys": "no"}), "does not serve a JWK Set"),
        (httpx.Response(200, content=b" " * 70_000), "larger than"),
    ],
)
def test_fetch_jwks_refuses_what_is_not_a_key_set(response: httpx.Response, description: str) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return response

    with jwks_client(handler) as http, pytest.raises(OAuthError, match=description) as caught:
        fetch_jwks(http, JWKS_URL)
    assert caught.value.error == "invalid_client"
    assert seen == [JWKS_URL]  # no redirect followed


def test_fetch_jwks_calls_only_https_or_loopback(world: World) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no request may be made")

    with jwks_client(handler) as http, pytest.raises(OAuthError, match="https"):
        fetch_jwks(http, "http://keys.example/jwks.json")


def test_fetch_jwks_reports_an_unreachable_host() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    with jwks_client(handler) as http, pytest.raises(OAuthError, match=r"could not be read \(ConnectError\)"):
        fetch_jwks(http, JWKS_URL)
