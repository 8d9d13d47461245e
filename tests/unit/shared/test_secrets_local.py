"""Secret names (unique, Key-Vault-legal) and the file-backed LocalSecretStore."""

from __future__ import annotations

import logging
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.config import Settings
from shared.errors import PermanentError, ValidationError
from shared.secrets.base import (
    ROLE_DESTINATION,
    ROLE_SOURCE_AUTH,
    SecretNotFoundError,
    SecretStore,
    check_secret_name,
    new_secret_name,
)
from shared.secrets.factory import make_secret_store
from shared.secrets.keyvault import KeyVaultSecretStore
from shared.secrets.local import LocalSecretStore

pytestmark = pytest.mark.unit

VALUE = "Bearer eyJ-not-a-real-token"  # noqa: S105 - test data


@given(st.text(max_size=300), st.sampled_from([ROLE_SOURCE_AUTH, ROLE_DESTINATION, "x"]))
def test_generated_names_are_key_vault_legal(job_id: str, role: str) -> None:
    name = new_secret_name(job_id, role)
    assert check_secret_name("n", name) == name
    assert len(name) <= 127
    assert "--" not in name and role in name


def test_generated_names_are_unique_even_for_the_same_job() -> None:
    names = {new_secret_name("job-1", ROLE_DESTINATION) for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.startswith("export-job-1-destination-") for n in names)


@pytest.mark.parametrize("name", ["", "a_b", "../etc/passwd", "a.b", "x" * 128, "é"])
def test_illegal_names_are_refused(name: str) -> None:
    with pytest.raises(ValidationError):
        check_secret_name("secret_name", name)


def test_role_must_have_letters() -> None:
    with pytest.raises(ValueError):
        new_secret_name("job", "--")


@pytest.fixture
def store(tmp_path: Path) -> LocalSecretStore:
    return LocalSecretStore(tmp_path / "secrets")


def test_local_store_satisfies_the_protocol(store: LocalSecretStore) -> None:
    assert isinstance(store, SecretStore)


def test_set_get_replace_delete(store: LocalSecretStore) -> None:
    store.set("job-1-dest", VALUE)
    assert store.get("job-1-dest") == VALUE
    store.set("job-1-dest", "second")
    assert store.get("job-1-dest") == "second"
    store.delete("job-1-dest")
    with pytest.raises(SecretNotFoundError) as info:
        store.get("job-1-dest")
    assert isinstance(info.value, PermanentError) and info.value.name == "job-1-dest"


def test_missing_secret_is_not_found_and_delete_is_idempotent(store: LocalSecretStore) -> None:
    with pytest.raises(SecretNotFoundError):
        store.get("never-set")
    store.delete("never-set")
    store.delete("never-set")


def test_values_persist_across_instances_and_keep_unicode(tmp_path: Path) -> None:
    LocalSecretStore(tmp_path).set("s1", "päss\nwörd ✓")
    assert LocalSecretStore(tmp_path).get("s1") == "päss\nwörd ✓"


def test_files_are_private_and_no_temporary_files_remain(store: LocalSecretStore) -> None:
    store.set("s1", VALUE)
    store.set("s1", VALUE + "2")
    assert stat.S_IMODE(os.stat(store.folder / "s1").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(store.folder).st_mode) == 0o700
    assert sorted(p.name for p in store.folder.iterdir()) == ["s1"]


def test_names_cannot_escape_the_folder(store: LocalSecretStore, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        store.set("../outside", VALUE)
    assert not (tmp_path / "outside").exists()


def test_concurrent_writers_leave_one_whole_value(store: LocalSecretStore) -> None:
    values = [f"value-{i}-" + "x" * 5000 for i in range(8)]
    threads = [threading.Thread(target=store.set, args=("shared", v)) for v in values]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get("shared") in values


def test_an_unusable_folder_is_a_permanent_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(PermanentError):
        LocalSecretStore(blocker / "secrets").set("s1", VALUE)


def test_values_are_never_logged(store: LocalSecretStore, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        store.set("s1", VALUE)
        store.get("s1")
        store.delete("s1")
    assert "s1" in caplog.text
    assert VALUE not in caplog.text


def test_factory_picks_local_without_key_vault(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "LOCAL_SECRETS_PATH": str(tmp_path)}
    )
    store = make_secret_store(settings)
    assert isinstance(store, LocalSecretStore) and store.folder == tmp_path


def test_factory_picks_key_vault_and_reuses_its_client() -> None:
    settings = Settings.from_env(
        {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "KEY_VAULT_URL": "https://127.0.0.1:1/"}
    )
    first, second = make_secret_store(settings), make_secret_store(settings)
    assert isinstance(first, KeyVaultSecretStore)
    assert first is second  # one SecretClient (and token cache) per process
