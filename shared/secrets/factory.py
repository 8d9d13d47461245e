"""`make_secret_store`: Key Vault when `KEY_VAULT_URL` is set, else the local folder store.

The Key Vault store is cached per vault URL, so every caller in a process shares one
`SecretClient` (and one token cache) however often the composition root asks for it.
"""

from __future__ import annotations

from functools import cache

from shared.config import Settings
from shared.secrets.base import SecretStore
from shared.secrets.local import LocalSecretStore

__all__ = ["make_secret_store"]


def make_secret_store(settings: Settings) -> SecretStore:
    if settings.key_vault_url is not None:
        return _key_vault_store(settings.key_vault_url)
    return LocalSecretStore(settings.local_secrets_path)


@cache
def _key_vault_store(vault_url: str) -> SecretStore:
    # Imported here so the self-hosted runtime does not load azure-keyvault when it is not used.
    from shared.secrets.keyvault import KeyVaultSecretStore

    return KeyVaultSecretStore(vault_url)
