"""Caller identity headers as App Service Authentication sets them (selfhost.http.principal)."""

from __future__ import annotations

import base64
import json

import pytest

from selfhost.http.principal import Principal, forwarded_headers, principal_for
from selfhost.keys import KeyMatch

pytestmark = pytest.mark.unit


def decoded(headers: list[tuple[str, str]]) -> dict[str, object]:
    value = dict(headers)["X-MS-CLIENT-PRINCIPAL"]
    return dict(json.loads(base64.b64decode(value, validate=True)))


def test_a_named_function_key_is_a_caller_of_that_name() -> None:
    principal = principal_for(KeyMatch("function", "alice@example.org"))
    assert principal == Principal("alice@example.org")
    headers = principal.headers()
    assert dict(headers) | {"X-MS-CLIENT-PRINCIPAL": "..."} == {
        "X-MS-CLIENT-PRINCIPAL": "...",
        "X-MS-CLIENT-PRINCIPAL-NAME": "alice@example.org",
        "X-MS-CLIENT-PRINCIPAL-ID": "alice@example.org",
        "X-MS-CLIENT-PRINCIPAL-IDP": "functionkey",
    }
    assert decoded(headers) == {
        "auth_typ": "functionkey",
        "name_typ": "name",
        "role_typ": "roles",
        "claims": [{"typ": "name", "val": "alice@example.org"}],
    }


def test_the_master_key_is_admin_with_the_operator_role() -> None:
    principal = principal_for(KeyMatch("master", "master"))
    assert principal == Principal("admin", ("operator",))
    assert decoded(principal.headers())["claims"] == [
        {"typ": "name", "val": "admin"},
        {"typ": "roles", "val": "operator"},
    ]


@pytest.mark.parametrize(
    "match", [None, KeyMatch("function", "default"), KeyMatch("system", "durabletask_extension")]
)
def test_default_key_system_keys_and_no_key_carry_no_principal(match: KeyMatch | None) -> None:
    assert principal_for(match) is None


FORGED = [
    ("X-MS-CLIENT-PRINCIPAL", "eyJ9"),
    ("x-ms-client-principal-name", "root"),
    ("X-Ms-Client-Principal-Id", "root"),
    ("X-MS-CLIENT-PRINCIPAL-IDP", "aad"),
    ("X_MS_CLIENT_PRINCIPAL_NAME", "root"),  # "_" read as "-" by some frameworks
]


def test_client_sent_principal_headers_are_removed() -> None:
    kept = [("Accept", "*/*"), ("X-MS-Other", "kept"), ("x-functions-key", "k")]
    assert forwarded_headers(FORGED + kept, None) == kept


def test_ours_replace_the_forged_ones() -> None:
    out = forwarded_headers([*FORGED, ("Accept", "*/*")], Principal("bob"))
    names = [n.lower() for n, _ in out]
    assert names.count("x-ms-client-principal-name") == 1
    assert dict(out)["X-MS-CLIENT-PRINCIPAL-NAME"] == "bob"
    assert ("Accept", "*/*") in out
