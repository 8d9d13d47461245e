"""Callers: identity from App Service's principal headers only where they are trusted; owners,
operators and trusted clients; requested_by decided by who calls."""

from __future__ import annotations

import base64
import json

import pytest

from shared.callers import TRUSTED, Caller, Forbidden, Unauthenticated, caller_from_headers

pytestmark = pytest.mark.unit


def principal(name: str | None, *roles: str, header_name: bool = True) -> dict[str, str]:
    claims = ([{"typ": "name", "val": name}] if name else []) + [{"typ": "roles", "val": r} for r in roles]
    document = {"auth_typ": "aad", "name_typ": "name", "role_typ": "roles", "claims": claims}
    headers = {"X-MS-CLIENT-PRINCIPAL": base64.b64encode(json.dumps(document).encode()).decode()}
    if header_name and name:
        headers["X-MS-CLIENT-PRINCIPAL-NAME"] = name
    return headers


def test_without_trust_the_headers_are_ignored() -> None:
    caller = caller_from_headers(
        principal("alice@example.org"), principal_trusted=False, require_identity=False
    )
    assert caller.identity is None and caller.sees_all


def test_a_trusted_principal_is_the_identity() -> None:
    caller = caller_from_headers(
        principal("alice@example.org"), principal_trusted=True, require_identity=False
    )
    assert caller == Caller("alice@example.org", False, bucket="id:alice@example.org")


def test_the_name_claim_serves_when_the_name_header_is_missing() -> None:
    headers = principal("bob@example.org", header_name=False)
    assert (
        caller_from_headers(headers, principal_trusted=True, require_identity=False).identity
        == "bob@example.org"
    )


def test_operators_by_setting_or_by_role() -> None:
    listed = caller_from_headers(principal("Ops@Example.org"), principal_trusted=True, require_identity=False,
                                 operators=["ops@example.org"])  # fmt: skip
    by_role = caller_from_headers(
        principal("admin", "operator"), principal_trusted=True, require_identity=False
    )
    assert listed.operator and by_role.operator


def test_without_identity_required_a_caller_without_one_is_refused() -> None:
    with pytest.raises(Unauthenticated):
        caller_from_headers({}, principal_trusted=True, require_identity=True)
    with pytest.raises(Unauthenticated):
        caller_from_headers({"X-MS-CLIENT-PRINCIPAL": "%%%"}, principal_trusted=True, require_identity=False)


def test_trusted_clients_are_counted_by_the_key_they_present_never_storing_it() -> None:
    a = caller_from_headers({"x-functions-key": "k1"}, principal_trusted=False, require_identity=False)
    b = caller_from_headers({"x-functions-key": "k2"}, principal_trusted=False, require_identity=False)
    assert a.bucket != b.bucket and "k1" not in a.bucket


def test_owners_see_and_act_on_their_jobs_only() -> None:
    alice = Caller("alice@example.org", False)
    mine, theirs = {"requested_by": "Alice@example.org"}, {"requested_by": "bob@example.org"}
    session = {"requested_by": "scanner@example.org", "kind": "session"}
    assert alice.may_see(mine) and alice.may_act(mine)
    assert not alice.may_see(theirs) and not alice.may_act(theirs)
    assert alice.may_see(session) and not alice.may_act(session)
    assert TRUSTED.may_act(theirs) and Caller("ops", True).may_act(session)


def test_requested_by_is_the_identity_unless_an_operator_names_someone() -> None:
    alice = Caller("alice@example.org", False)
    assert alice.requester(None) == alice.requester("alice@example.org") == "alice@example.org"
    with pytest.raises(Forbidden) as caught:
        alice.requester("bob@example.org")
    assert caught.value.field == "requested_by"
    assert Caller("ops", True).requester("bob@example.org") == "bob@example.org"
    assert TRUSTED.requester("anyone@example.org") == "anyone@example.org"


def test_listing_filter() -> None:
    alice = Caller("alice@example.org", False)
    assert alice.list_filter(None) == "alice@example.org"
    with pytest.raises(Forbidden):
        alice.list_filter("bob@example.org")
    assert TRUSTED.list_filter("bob@example.org") == "bob@example.org"


def test_a_front_door_job_is_never_owned_by_whom_its_headers_name() -> None:
    alice = Caller("alice@example.org", False)
    named = {"requested_by": "alice@example.org", "origin": "frontdoor"}
    assert not alice.may_see(named) and not alice.may_act(named)
    assert Caller("ops", True).may_act(named)


def test_a_key_given_as_code_has_its_own_bucket() -> None:
    a = caller_from_headers({}, principal_trusted=False, require_identity=False, query_key="k1")
    b = caller_from_headers({}, principal_trusted=False, require_identity=False, query_key="k2")
    assert a.bucket != b.bucket != "anonymous"
