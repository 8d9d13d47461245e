"""The health probes against real servers on loopback: SMTP (aiosmtpd: EHLO and NOOP, nothing
sent) and Key Vault (the local HTTPS server, through the real SecretClient, without retries)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session

from shared.config import Settings
from shared.health_probes import PROBE_SECRET, check_secrets, check_smtp, probe_smtp
from shared.secrets.base import SecretStore
from shared.secrets.keyvault import KeyVaultSecretStore
from tests.support.keyvault_server import KeyVaultServer, StaticTokenCredential
from tests.support.ports import free_port

pytestmark = pytest.mark.runtime

STORAGE = "UseDevelopmentStorage=true"


class NoMail:
    """Fails the test if the probe ever starts a mail transaction."""

    def __init__(self) -> None:
        self.transactions = 0

    async def handle_MAIL(  # noqa: N802 - aiosmtpd's hook name
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        self.transactions += 1
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Controller, NoMail]]:
    handler = NoMail()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, handler
    finally:
        controller.stop()


def mail_settings(port: int) -> Settings:
    return Settings.from_env({"AzureWebJobsStorage": STORAGE, "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port),
                              "SMTP_SECURITY": "none", "MAIL_FROM": "bulk-export@example.com"})  # fmt: skip


def test_a_running_smtp_server_is_ok_and_gets_no_mail(smtp: tuple[Controller, NoMail]) -> None:
    controller, handler = smtp
    assert check_smtp(mail_settings(controller.port), probe_smtp) == "ok"
    assert handler.transactions == 0


def test_a_closed_smtp_port_is_refused() -> None:
    assert check_smtp(mail_settings(free_port()), probe_smtp) == "error: connection refused"


@pytest.fixture(scope="module")
def vault(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeyVaultServer]:
    with KeyVaultServer(Path(tmp_path_factory.mktemp("keyvault"))) as kv:
        yield kv


def probe_store(vault: KeyVaultServer, url: str | None = None, token: str | None = None) -> SecretStore:
    """What `secret_probe_for` builds, with the test server's credential and CA."""
    credential = StaticTokenCredential(token) if token else vault.credential()
    options = {**vault.client_kwargs(), "retry_total": 0, "connection_timeout": 2, "read_timeout": 3}
    return KeyVaultSecretStore(url or vault.url, credential, client_kwargs=options)


def vault_settings(vault: KeyVaultServer) -> Settings:
    return Settings.from_env({"AzureWebJobsStorage": STORAGE, "KEY_VAULT_URL": vault.url})


def test_key_vault_answering_not_found_for_the_probe_is_ok(vault: KeyVaultServer) -> None:
    vault.reset()
    assert check_secrets(lambda _: probe_store(vault), vault_settings(vault)) == "ok"
    method, path, authorized = vault.requests[-1]
    assert (method, authorized) == ("GET", True) and f"/secrets/{PROBE_SECRET}" in path


def test_key_vault_refusing_the_identity_is_an_authentication_error(vault: KeyVaultServer) -> None:
    state = check_secrets(lambda _: probe_store(vault, token="wrong"), vault_settings(vault))
    assert state == "error: authentication failed"


def test_an_unreachable_key_vault_is_unreachable(vault: KeyVaultServer) -> None:
    closed = f"https://127.0.0.1:{free_port()}"
    assert (
        check_secrets(lambda _: probe_store(vault, url=closed), vault_settings(vault)) == "error: unreachable"
    )
