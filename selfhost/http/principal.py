"""Caller identity headers, added the way App Service Authentication adds them.

App Service removes every client-sent `X-MS-CLIENT-PRINCIPAL*` header before the app sees a
request and adds its own for an authenticated caller, so the app can tell callers apart. The
runtime does the same with function keys as the identity provider: a named function key (any
name but "default") is the caller of that name; the master key is the caller `admin` with the
role `operator`; the default key, system keys and calls without a valid key carry no principal.
The identity comes from the key that was presented, whatever the function's auth level (as the
host authenticates every request before it authorizes it). Pure: no aiohttp here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from dataclasses import dataclass

from selfhost.keys import DEFAULT_FUNCTION_KEY, KeyMatch

__all__ = ["MASTER_IDENTITY", "OPERATOR_ROLE", "Principal", "forwarded_headers", "principal_for"]

AUTH_TYPE = "functionkey"
MASTER_IDENTITY = "admin"
OPERATOR_ROLE = "operator"
_PREFIX = "x-ms-client-principal"


@dataclass(frozen=True)
class Principal:
    name: str
    roles: tuple[str, ...] = ()

    def headers(self) -> list[tuple[str, str]]:
        claims = [{"typ": "name", "val": self.name}] + [{"typ": "roles", "val": r} for r in self.roles]
        document = {"auth_typ": AUTH_TYPE, "name_typ": "name", "role_typ": "roles", "claims": claims}
        encoded = base64.b64encode(json.dumps(document).encode("utf-8")).decode("ascii")
        return [
            ("X-MS-CLIENT-PRINCIPAL", encoded),
            ("X-MS-CLIENT-PRINCIPAL-NAME", self.name),
            ("X-MS-CLIENT-PRINCIPAL-ID", self.name),
            ("X-MS-CLIENT-PRINCIPAL-IDP", AUTH_TYPE),
        ]


def principal_for(match: KeyMatch | None) -> Principal | None:
    if match is None:
        return None
    if match.kind == "master":
        return Principal(MASTER_IDENTITY, (OPERATOR_ROLE,))
    if match.kind == "function" and match.name != DEFAULT_FUNCTION_KEY:
        return Principal(match.name)
    return None


def _is_principal_header(name: str) -> bool:
    # Also "X_MS_CLIENT_PRINCIPAL_NAME": some proxies and frameworks treat "_" as "-".
    return name.lower().replace("_", "-").startswith(_PREFIX)


def forwarded_headers(pairs: Iterable[tuple[str, str]], principal: Principal | None) -> list[tuple[str, str]]:
    """The request headers the function sees: the client's principal headers removed, ours added."""
    kept = [(name, value) for name, value in pairs if not _is_principal_header(name)]
    return kept + (principal.headers() if principal is not None else [])
