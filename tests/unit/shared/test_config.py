"""Settings.from_env: defaults, fallbacks, and failing fast with the setting's name (never its value)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import Settings, SettingsError
from shared.errors import PermanentError

pytestmark = pytest.mark.unit

STORAGE = "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:1/devstoreaccount1;"


def test_minimal_environment_gets_the_defaults() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": STORAGE})
    assert settings.web_jobs_storage == STORAGE
    assert settings.key_vault_url is None and not settings.uses_key_vault
    assert settings.local_secrets_path == Path(".state/secrets")
    assert settings.default_container == "exports"
    assert settings.default_fhir_base_url is None
    assert settings.smtp_host is None and not settings.mail_enabled
    assert settings.smtp_port == 25
    # Destinations without a secret write to the host storage unless told otherwise.
    assert settings.export_storage_connection == STORAGE


def test_every_setting_is_read() -> None:
    settings = Settings.from_env(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "KEY_VAULT_URL": "https://my-vault.vault.azure.net/",
            "LOCAL_SECRETS_PATH": "/tmp/secrets",
            "EXPORT_DEFAULT_FHIR_BASE_URL": "http://127.0.0.1:8080/fhir",
            "EXPORT_DEFAULT_CONTAINER": "bulk",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": "2525",
            "MAIL_FROM": "exports@example.org",
            "ADMIN_EMAIL": "admin@example.org",
            "EXPORT_STORAGE_CONNECTION": "https://exportacct.blob.core.windows.net",
        }
    )
    assert settings.key_vault_url == "https://my-vault.vault.azure.net/" and settings.uses_key_vault
    assert settings.local_secrets_path == Path("/tmp/secrets")
    assert settings.default_fhir_base_url == "http://127.0.0.1:8080/fhir"
    assert settings.default_container == "bulk"
    assert (settings.smtp_host, settings.smtp_port, settings.mail_enabled) == ("127.0.0.1", 2525, True)
    assert (settings.mail_from, settings.admin_email) == ("exports@example.org", "admin@example.org")
    assert settings.export_storage_connection == "https://exportacct.blob.core.windows.net"


def test_empty_values_count_as_unset() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": STORAGE, "KEY_VAULT_URL": "", "SMTP_PORT": "  "})
    assert settings.key_vault_url is None and settings.smtp_port == 25


def test_identity_based_host_storage() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage__accountName": "acct"})
    assert settings.web_jobs_storage == "https://acct.blob.core.windows.net"
    assert settings.export_storage_connection == "https://acct.blob.core.windows.net"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({}, "AzureWebJobsStorage"),
        ({"AzureWebJobsStorage": "not a connection string"}, "AzureWebJobsStorage"),
        ({"KEY_VAULT_URL": "http://my-vault.vault.azure.net"}, "KEY_VAULT_URL"),
        ({"KEY_VAULT_URL": "my-vault"}, "KEY_VAULT_URL"),
        ({"EXPORT_DEFAULT_FHIR_BASE_URL": "ftp://x"}, "EXPORT_DEFAULT_FHIR_BASE_URL"),
        ({"EXPORT_DEFAULT_CONTAINER": "Not_Valid"}, "EXPORT_DEFAULT_CONTAINER"),
        ({"SMTP_PORT": "smtp"}, "SMTP_PORT"),
        ({"SMTP_PORT": "70000"}, "SMTP_PORT"),
        ({"SMTP_HOST": "127.0.0.1"}, "MAIL_FROM"),
        ({"MAIL_FROM": "nobody"}, "MAIL_FROM"),
        ({"ADMIN_EMAIL": "admin"}, "ADMIN_EMAIL"),
        ({"EXPORT_STORAGE_CONNECTION": "AccountKey"}, "EXPORT_STORAGE_CONNECTION"),
    ],
)
def test_bad_settings_fail_fast_naming_the_setting(env: dict[str, str], setting: str) -> None:
    base = {} if setting == "AzureWebJobsStorage" else {"AzureWebJobsStorage": STORAGE}
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**base, **env})
    assert info.value.setting == setting
    assert setting in str(info.value)
    assert isinstance(info.value, PermanentError)


def test_connection_strings_stay_out_of_messages_and_repr() -> None:
    secret = "DefaultEndpointsProtocol=https;AccountName=a;AccountKey=TOPSECRET"
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {"AzureWebJobsStorage": STORAGE, "EXPORT_STORAGE_CONNECTION": "TOPSECRET-no-equals"}
        )
    assert "TOPSECRET" not in str(info.value)
    settings = Settings.from_env({"AzureWebJobsStorage": secret})
    assert "TOPSECRET" not in repr(settings)
