"""SMART_CLIENTS and FHIR_FRONTDOOR_KEYS: registrations checked at load, errors naming the entry."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.config import Settings, SettingsError
from shared.errors import ValidationError
from shared.smart_clients import Scope, SmartClient, parse_scope, parse_smart_clients
from tests.support.bulk_client import ClientKey

pytestmark = pytest.mark.unit

RSA = ClientKey.rsa("rsa-1")
EC = ClientKey.ec("ec-1")


def entry(**fields: Any) -> dict[str, Any]:
    return {"client_id": "analytics", "jwks": RSA.jwks(), "scopes": ["system/*.read"], **fields}


def parse(*entries: Any) -> tuple[SmartClient, ...]:
    return parse_smart_clients(json.dumps(list(entries)))


def test_inline_and_url_registrations_are_read() -> None:
    url_entry = {
        "client_id": "warehouse",
        "jwks_url": "https://keys.example/jwks.json",
        "scopes": ["system/Patient.rs"],
    }
    inline, by_url = parse(entry(jwks=EC.jwks()), url_entry)

    assert inline.client_id == "analytics" and inline.jwks == EC.jwks() and inline.jwks_url is None
    assert inline.scopes == (Scope("system/*.read", None),)
    assert by_url.jwks is None and by_url.jwks_url == "https://keys.example/jwks.json"
    assert by_url.scopes == (Scope("system/Patient.rs", "Patient"),)


@pytest.mark.parametrize(
    ("text", "resource_type"),
    [
        ("system/*.read", None),
        ("system/*.rs", None),
        ("system/Patient.read", "Patient"),
        ("system/Observation.rs", "Observation"),
    ],
)
def test_the_v1_and_v2_read_scopes_are_supported(text: str, resource_type: str | None) -> None:
    assert parse_scope(text) == Scope(text, resource_type)


@pytest.mark.parametrize(
    "text",
    [
        "system/*.write",
        "system/*.*",
        "system/*.cruds",
        "user/*.read",
        "patient/Patient.rs",
        "system/Patient.rs?x=1",
        "launch",
        "system/patient.read",
    ],
)
def test_other_scopes_are_not(text: str) -> None:
    assert parse_scope(text) is None


def test_a_wildcard_registration_covers_every_type_in_either_form() -> None:
    (client,) = parse(entry(scopes=["system/*.read"]))
    narrow = parse(entry(scopes=["system/Patient.rs"]))[0]

    assert client.covers(Scope("system/Observation.rs", "Observation"))
    assert narrow.covers(Scope("system/Patient.read", "Patient"))
    assert not narrow.covers(Scope("system/Observation.read", "Observation"))
    assert not narrow.covers(Scope("system/*.read", None))


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("not json", "SMART_CLIENTS: is not valid JSON"),
        ('{"client_id": "x"}', "must be a JSON list"),
        ([entry(client_id="has space")], "[0].client_id: must be 1..128 printable ASCII"),
        ([entry(), entry()], "[1]: client_id 'analytics' is registered twice"),
        ([entry(jwks_url="https://k.example/j.json")], "[0] (client 'analytics'): needs exactly one of jwks"),
        ([{"client_id": "a", "scopes": ["system/*.read"]}], "needs exactly one of jwks"),
        ([entry(colour="blue")], "unknown field(s) colour"),
        ([entry(scopes=[])], "scopes: must be a non-empty list"),
        ([entry(scopes=["system/*.write"])], "'system/*.write' is not a supported scope"),
        ([entry(jwks={"keys": []})], "jwks: must be a JWK Set"),
        ([entry(jwks={"keys": [{**RSA.public_jwk(), "kid": ""}]})], "keys[0]: must be a JWK with a kid"),
        ([entry(jwks={"keys": [{**RSA.public_jwk(), "d": "private"}]})], "holds a private key"),
        (
            [entry(jwks={"keys": [{**EC.public_jwk(), "crv": "P-256", "alg": None}]})],
            "must be an RSA key (RS384) or an EC P-384",
        ),
        ([entry(jwks={"keys": [{"kty": "RSA", "kid": "k", "n": "AQAB"}]})], "is not a usable public key"),
    ],
)
def test_bad_registrations_are_refused_naming_the_entry(entries: Any, message: str) -> None:
    text = entries if isinstance(entries, str) else json.dumps(entries)
    with pytest.raises(ValidationError) as caught:
        parse_smart_clients(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://keys.example/jwks.json", True),
        ("http://127.0.0.1:8000/jwks.json", True),
        ("http://localhost/jwks.json", True),
        ("http://keys.example/jwks.json", False),
        ("ftp://keys.example/jwks.json", False),
        ("https://user:pw@keys.example/jwks.json", False),
    ],
)
def test_a_jwks_url_is_https_or_loopback_http(url: str, ok: bool) -> None:
    registration = {"client_id": "w", "jwks_url": url, "scopes": ["system/*.read"]}
    if ok:
        assert parse(registration)[0].jwks_url == url
    else:
        with pytest.raises(ValidationError, match=r"\[0\] \(client 'w'\)\.jwks_url"):
            parse(registration)


STORAGE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}


def test_settings_read_both_settings() -> None:
    settings = Settings.from_env(
        {
            **STORAGE,
            "SMART_CLIENTS": json.dumps([entry()]),
            "FHIR_FRONTDOOR_KEYS": " key-one-0123456789 ,key-two-0123456789,",
        }
    )

    assert [c.client_id for c in settings.smart_clients] == ["analytics"]
    assert settings.frontdoor_keys == ("key-one-0123456789", "key-two-0123456789")
    assert "key-one" not in repr(settings)


def test_both_default_to_none() -> None:
    settings = Settings.from_env(STORAGE)
    assert settings.smart_clients == () and settings.frontdoor_keys == ()


def test_a_bad_registration_fails_the_settings_naming_setting_and_entry() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env(
            {**STORAGE, "SMART_CLIENTS": json.dumps([entry(), entry(client_id="b", scopes=["x"])])}
        )
    assert caught.value.setting == "SMART_CLIENTS"
    assert str(caught.value).startswith(
        "setting SMART_CLIENTS: [1] (client 'b').scopes: 'x' is not a supported scope"
    )
    with pytest.raises(SettingsError, match="^setting SMART_CLIENTS: is not valid JSON$"):
        Settings.from_env({**STORAGE, "SMART_CLIENTS": "[oops"})


def test_a_short_frontdoor_key_is_refused_without_echoing_it() -> None:
    with pytest.raises(SettingsError) as caught:
        Settings.from_env({**STORAGE, "FHIR_FRONTDOOR_KEYS": "long-enough-key-0123,short"})
    assert caught.value.setting == "FHIR_FRONTDOOR_KEYS"
    assert "short" not in str(caught.value) and "long-enough" not in str(caught.value)
