"""shared.health against a real Azurite: the probe the health endpoint runs, without fakes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from shared.health import NOT_CONFIGURED, OK, check_health, check_storage
from tests.support.azurite import Azurite

pytestmark = pytest.mark.azurite


async def durable_ok() -> None:
    return None


def test_storage_check_passes_against_azurite(azurite: Azurite) -> None:
    assert check_storage(azurite.connection_string) == OK


def test_health_is_ok_with_azurite_as_host_storage(azurite: Azurite, tmp_path: Path) -> None:
    env = {"AzureWebJobsStorage": azurite.connection_string, "LOCAL_SECRETS_PATH": str(tmp_path)}
    report = asyncio.run(check_health(env, durable=durable_ok))

    assert report.to_json() == {
        "status": "ok",
        "checks": {
            "runtime": OK,
            "settings": OK,
            "storage": OK,
            "durable": OK,
            "secrets": OK,
            "smtp": NOT_CONFIGURED,
        },
    }


def test_wrong_account_key_is_reported_as_an_authorization_failure(azurite: Azurite) -> None:
    wrong_key = azurite.connection_string.replace("AccountKey=Eby8", "AccountKey=Xby8")

    assert check_storage(wrong_key) == "error: http 403 AuthorizationFailure"
