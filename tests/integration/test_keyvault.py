"""KeyVaultSecretStore through the real azure-keyvault-secrets SecretClient, against the local
HTTPS server in tests/support/keyvault_server.py (challenge auth, soft delete, purge)."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.errors import PermanentError, RetryAfterError, TransientError
from shared.secrets.base import (
    ROLE_DESTINATION,
    SecretConflictError,
    SecretNotFoundError,
    SecretStore,
    new_secret_name,
)
from shared.secrets.keyvault import KeyVaultSecretStore
from tests.support.keyvault_server import KeyVaultServer, StaticTokenCredential
from tests.support.ports import free_port

pytestmark = pytest.mark.runtime

VALUE = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=VGhpcyBpcyBzZWNyZXQ="


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultServer]:
    with KeyVaultServer(Path(tmp_path_factory.mktemp("keyvault"))) as kv:
        yield kv


@pytest.fixture
def vault(server: KeyVaultServer) -> Iterator[KeyVaultServer]:
    server.reset()
    yield server
    server.reset()


def _store(vault: KeyVaultServer, credential: StaticTokenCredential | None = None) -> KeyVaultSecretStore:
    return KeyVaultSecretStore(
        vault.url,
        credential or vault.credential(),
        polling_interval_s=0.01,
        # retry_total=0: the durable retry policy retries; SDK retries would only slow the test.
        client_kwargs={**vault.client_kwargs(), "retry_total": 0},
    )


def _name() -> str:
    return new_secret_name(str(uuid.uuid4()), ROLE_DESTINATION)


def test_set_and_get_go_through_the_challenge(vault: KeyVaultServer) -> None:
    store = _store(vault)
    assert isinstance(store, SecretStore)
    name = _name()
    store.set(name, VALUE)
    assert store.get(name) == VALUE
    assert vault.secrets == {name: VALUE}
    first = vault.requests[0]
    assert first[2] is False  # the first request carried no token and was answered 401
    assert all(authorized for _, _, authorized in vault.requests[1:])


def test_setting_again_adds_a_version_and_get_returns_the_latest(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    store.set(name, "one")
    store.set(name, "two")
    assert len(vault.versions(name)) == 2
    assert store.get(name) == "two"


def test_missing_secret_is_a_permanent_not_found(vault: KeyVaultServer) -> None:
    with pytest.raises(SecretNotFoundError) as info:
        _store(vault).get("export-nobody-destination-000000000000")
    assert isinstance(info.value, PermanentError)


def test_delete_waits_for_the_deletion_then_purges(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    store.set(name, VALUE)
    vault.configure(deletion_polls=3)  # a real vault lists the deleted secret after a moment
    store.delete(name)
    assert name not in vault.secrets and name not in vault.deleted
    calls = [(method, path) for method, path, _ in vault.requests]
    assert calls[-5:] == [("GET", f"/deletedsecrets/{name}")] * 4 + [("DELETE", f"/deletedsecrets/{name}")]
    with pytest.raises(SecretNotFoundError):
        store.get(name)


def test_delete_is_idempotent(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    store.set(name, VALUE)
    store.delete(name)
    store.delete(name)
    store.delete(_name())  # never existed


def test_a_purged_name_can_be_reused(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    store.set(name, "first job")
    store.delete(name)
    store.set(name, "second job")
    assert store.get(name) == "second job"


def test_without_purge_permission_the_name_stays_taken(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    vault.configure(purge_allowed=False)
    store.set(name, VALUE)
    store.delete(name)  # tolerated: deleted, not purged
    assert vault.deleted == {name}
    with pytest.raises(SecretConflictError):
        store.set(name, VALUE)  # why per-job names must be unique
    store.set(_name(), VALUE)


def test_vault_without_soft_delete(vault: KeyVaultServer) -> None:
    store, name = _store(vault), _name()
    vault.configure(soft_delete=False)
    store.set(name, VALUE)
    store.delete(name)
    assert vault.deleted == set() and vault.secrets == {}


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_transient(vault: KeyVaultServer, status: int) -> None:
    store = _store(vault)
    store.set(name := _name(), VALUE)  # settles the challenge first
    vault.fail_next(status)
    with pytest.raises(TransientError):
        store.get(name)
    assert store.get(name) == VALUE  # and it passes


def test_unreachable_vault_is_transient(vault: KeyVaultServer) -> None:
    store = KeyVaultSecretStore(
        f"https://127.0.0.1:{free_port()}",
        vault.credential(),
        client_kwargs={**vault.client_kwargs(), "retry_total": 0},
    )
    with pytest.raises(TransientError, match="unreachable"):
        store.get(_name())


def test_a_wrong_token_is_permanent(vault: KeyVaultServer) -> None:
    with pytest.raises(PermanentError) as info:
        _store(vault, StaticTokenCredential("wrong")).get(_name())
    assert not isinstance(info.value, TransientError)


def test_illegal_names_never_reach_the_vault(vault: KeyVaultServer) -> None:
    with pytest.raises(PermanentError):
        _store(vault).set("bad_name", VALUE)
    assert vault.requests == []


def test_secret_values_are_never_logged(vault: KeyVaultServer, caplog: pytest.LogCaptureFixture) -> None:
    store, name = _store(vault), _name()
    with caplog.at_level(logging.DEBUG):
        store.set(name, VALUE)
        store.get(name)
        store.delete(name)
    assert name in caplog.text
    assert VALUE not in caplog.text


def test_throttling_is_transient_and_retry_after_is_passed_on(vault: KeyVaultServer) -> None:
    store = _store(vault)
    store.set(name := _name(), VALUE)
    vault.fail_next(429, retry_after_s=9)
    with pytest.raises(RetryAfterError) as info:
        store.get(name)
    assert info.value.retry_after_s == 9.0
    vault.fail_next(429)
    with pytest.raises(TransientError) as plain:
        store.get(name)
    assert not isinstance(plain.value, RetryAfterError)
