"""authLevel checks, as the host's AuthenticationLevelHandler and AuthUtility do them.

A key comes from the `x-functions-key` header, else the `code` query parameter (the header
wins). `anonymous` needs nothing (a wrong key does not hurt); `function` accepts any function
key or the master key; `admin` only the master key. A system key never satisfies `function`
level: it only opens its own `runtime/webhooks/<extension>` routes (functions-host-facts.md §2).
"""

from __future__ import annotations

from collections.abc import Mapping

from selfhost.keys import HostKeys

__all__ = ["ANONYMOUS", "ADMIN", "FUNCTION", "authorize_function", "authorize_system", "presented_key"]

ANONYMOUS = "anonymous"
FUNCTION = "function"
ADMIN = "admin"


def presented_key(headers: Mapping[str, str], query: Mapping[str, str]) -> str | None:
    """`headers` must be case-insensitive (aiohttp's CIMultiDict is)."""
    key = headers.get("x-functions-key") or query.get("code")
    return key or None


def authorize_function(auth_level: str, key: str | None, keys: HostKeys) -> bool:
    level = auth_level.lower()
    if level == ANONYMOUS:
        return True
    if keys.is_master(key):
        return True
    if level == FUNCTION:
        return keys.is_function_key(key)
    # admin, and any level we do not know (fail closed)
    return False


def authorize_system(key_name: str, key: str | None, keys: HostKeys) -> bool:
    """Extension webhooks: the `<extension>_extension` system key, or the master key."""
    return keys.is_master(key) or keys.is_system_key(key, key_name)
