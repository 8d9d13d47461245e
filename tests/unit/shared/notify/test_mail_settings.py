"""The outcome-mail settings of `Settings.from_env`: defaults, and errors naming the setting."""

from __future__ import annotations

import pytest

from shared.config import Settings, SettingsError

pytestmark = pytest.mark.unit

BASE = {"AzureWebJobsStorage": "UseDevelopmentStorage=true"}
MAIL = {**BASE, "SMTP_HOST": "smtp.example.org", "MAIL_FROM": "bulk-export@example.org"}


def test_defaults() -> None:
    settings = Settings.from_env(MAIL)
    assert settings.smtp_port == 25 and settings.smtp_security == "none"  # a relay on 25: plain
    assert settings.smtp_username is None and settings.smtp_password_secret is None
    assert settings.mail_admins == () and settings.admin_recipients == ()
    assert settings.mail_on_success == frozenset({"fhir-export", "batch"})
    assert settings.mail_retry_schedule == (30, 60, 300, 900, 3600)
    assert settings.public_base_url is None


@pytest.mark.parametrize(
    ("port", "security"),
    [("25", "none"), ("1025", "none"), ("465", "tls"), ("587", "starttls"), ("2525", "starttls")],
)
def test_security_follows_the_port_unless_given(port: str, security: str) -> None:
    assert Settings.from_env({**MAIL, "SMTP_PORT": port}).smtp_security == security
    assert Settings.from_env({**MAIL, "SMTP_PORT": port, "SMTP_SECURITY": "TLS"}).smtp_security == "tls"


def test_every_mail_setting_is_read() -> None:
    settings = Settings.from_env({
        **MAIL, "SMTP_PORT": "587", "SMTP_USERNAME": "apikey", "SMTP_PASSWORD_SECRET": "smtp-password",
        "MAIL_ADMINS": "ops@example.org, oncall@example.org", "ADMIN_EMAIL": "ops@example.org",
        "MAIL_ON_SUCCESS": "batch", "MAIL_RETRY_SCHEDULE": "10, 20,40", "PUBLIC_BASE_URL": "https://bulk.example.org",
    })  # fmt: skip
    assert settings.smtp_security == "starttls" and settings.smtp_username == "apikey"
    assert settings.smtp_password_secret == "smtp-password"
    assert settings.admin_recipients == ("ops@example.org", "oncall@example.org")
    assert settings.mail_on_success == frozenset({"batch"})
    assert settings.mail_retry_schedule == (10, 20, 40)
    assert settings.public_base_url == "https://bulk.example.org"
    assert Settings.from_env({**MAIL, "MAIL_ON_SUCCESS": "none"}).mail_on_success == frozenset()
    assert Settings.from_env({**MAIL, "ADMIN_EMAIL": "a@example.org"}).admin_recipients == ("a@example.org",)


def test_login_on_loopback_may_be_plain() -> None:
    env = {
        **MAIL,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": "1025",
        "SMTP_USERNAME": "u",
        "SMTP_PASSWORD_SECRET": "p",
    }
    assert Settings.from_env(env).smtp_security == "none"


@pytest.mark.parametrize(
    ("env", "setting"),
    [
        ({"SMTP_SECURITY": "ssl"}, "SMTP_SECURITY"),
        ({"SMTP_USERNAME": "apikey"}, "SMTP_PASSWORD_SECRET"),
        ({"SMTP_PASSWORD_SECRET": "smtp-password"}, "SMTP_USERNAME"),
        ({"SMTP_USERNAME": "u", "SMTP_PASSWORD_SECRET": "hunter2 is my password"}, "SMTP_PASSWORD_SECRET"),
        ({"SMTP_USERNAME": "u", "SMTP_PASSWORD_SECRET": "p", "SMTP_SECURITY": "none"}, "SMTP_SECURITY"),
        ({"MAIL_ADMINS": "ops@example.org,not-an-address"}, "MAIL_ADMINS"),
        ({"MAIL_ADMINS": "Ops <ops@example.org>"}, "MAIL_ADMINS"),
        ({"MAIL_ON_SUCCESS": "export"}, "MAIL_ON_SUCCESS"),
        ({"MAIL_ON_SUCCESS": "none,batch"}, "MAIL_ON_SUCCESS"),
        ({"MAIL_RETRY_SCHEDULE": "30,soon"}, "MAIL_RETRY_SCHEDULE"),
        ({"MAIL_RETRY_SCHEDULE": "30,0"}, "MAIL_RETRY_SCHEDULE"),
        ({"MAIL_RETRY_SCHEDULE": "30,,60"}, "MAIL_RETRY_SCHEDULE"),
        ({"PUBLIC_BASE_URL": "bulk.example.org"}, "PUBLIC_BASE_URL"),
    ],
)
def test_bad_mail_settings_name_the_setting(env: dict[str, str], setting: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({**MAIL, **env})
    assert raised.value.setting == setting
    assert str(raised.value).startswith(f"setting {setting}:")
    assert "hunter2" not in str(raised.value)
