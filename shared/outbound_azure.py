"""The outbound policy for Azure SDK clients: an azure-core transport that checks where it connects.

    transport = guarded_storage_transport(settings.outbound)
    ContainerClient(account_url, container, credential=sas, transport=transport)

For the storage clients of an account a request names (a connection string or SAS URL), not the
service's own (`shared.storage_policy` tells them apart; `shared.destinations.blob.container_client`
uses this). The app's storage clients are the sync ones, which send through azure-core's
`RequestsTransport` (requests over urllib3); this is that transport over a session whose every new
connection resolves the name through the policy's resolver, checks each address
(`OutboundPolicy.check_address`) and opens the socket to a checked one. So a name that resolved to
a public address when the destination was checked and resolves to an internal one now (DNS
rebinding) is refused, and so is any other host a request reaches (a redirect, which the SDK
follows through its transport). TLS stays on the name: SNI and certificate verification use the
URL's host; only the socket goes to the checked address. No proxy, from the environment or given:
a proxy makes the connection itself, where nothing checks it.

A refusal is `OutboundRefused`, a PermanentError: the SDK's retry policy retries only AzureErrors,
so it reaches the caller at once. A name that does not resolve is a connection error, which the
SDK maps to `ServiceRequestError` and retries. The `.aio` clients of the self-hosted runtime talk
to the service's own storage only and are not covered.
"""

from __future__ import annotations

import socket
import sys
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
import requests
from azure.core.pipeline.transport import RequestsTransport
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError
from urllib3.util import connection as _urllib3_connection
from urllib3.util.retry import Retry

from shared.outbound import OutboundPolicy, OutboundRefused

__all__ = ["guarded_storage_transport", "transport_options"]

_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# The storage SDK's own defaults (azure.storage.blob._shared.constants), which it gives only to
# a transport it builds itself.
_STORAGE_DEFAULTS: Final = {
    "connection_timeout": 20,
    "read_timeout": 60,
    "connection_data_block_size": 256 * 1024,
}
_TRANSPORT_OPTIONS: Final = frozenset({*_STORAGE_DEFAULTS, "connection_verify", "connection_cert"})
# azure-core's adapter asks for 32 KiB socket reads and writes (its `BiggerBlockSizeHTTPAdapter`,
# which requests >= 2.32.2 no longer consults); uploads of large items are faster with them.
_SOCKET_BLOCK: Final = 32 * 1024
# Tests replace this to prove no socket is opened anywhere but 127.0.0.1.
_connect = _urllib3_connection.create_connection


def _guarded_socket(conn: HTTPConnection, policy: OutboundPolicy) -> socket.socket:
    """`HTTPConnection._new_conn` under the policy: resolve, check every address, connect."""
    host, port = conn._dns_host.lower(), int(conn.port)
    try:
        addresses = list(policy.resolver(host, port))
    except (httpx.ConnectError, OSError) as exc:  # system_resolver reports with httpx's error
        raise NameResolutionError(conn.host, conn, socket.gaierror(str(exc))) from None
    for address in addresses:
        # The scheme was checked per request (`_GuardedAdapter.send`); here host, port, address.
        policy.check_address(None, host, port, address)
    last: OSError | None = None
    for address in addresses:
        try:
            sock = _connect(
                (address, port), conn.timeout, conn.source_address, socket_options=conn.socket_options
            )
        except TimeoutError as exc:
            raise ConnectTimeoutError(conn, f"Connection to {conn.host} timed out") from exc
        except OSError as exc:
            last = exc
            continue
        sys.audit("http.client.connect", conn, conn.host, port)
        return sock
    raise NewConnectionError(conn, f"Failed to establish a new connection: {last or 'no address'}")


def _pool_classes(policy: OutboundPolicy) -> dict[str, type[HTTPConnectionPool]]:
    """urllib3 pools whose connections go through `_guarded_socket` with `policy`."""

    class _Http(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _guarded_socket(self, policy)

    class _Https(HTTPSConnection):
        # HTTPSConnection.connect wraps this socket with the URL's host as SNI and checks the
        # certificate against it, so TLS is unchanged by connecting to an address.
        def _new_conn(self) -> socket.socket:
            return _guarded_socket(self, policy)

    class _HttpPool(HTTPConnectionPool):
        ConnectionCls = _Http

    class _HttpsPool(HTTPSConnectionPool):
        ConnectionCls = _Https

    return {"http": _HttpPool, "https": _HttpsPool}


class _GuardedAdapter(HTTPAdapter):
    def __init__(self, policy: OutboundPolicy) -> None:
        self._policy = policy  # before super().__init__, which makes the pool manager
        # No retries of its own, as azure-core's adapter: the SDK's retry policy decides.
        super().__init__(max_retries=Retry(total=False, redirect=False, raise_on_status=False))

    def init_poolmanager(
        self, connections: int, maxsize: int, block: bool = False, **pool_kwargs: Any
    ) -> None:
        super().init_poolmanager(connections, maxsize, block, blocksize=_SOCKET_BLOCK, **pool_kwargs)
        self.poolmanager.pool_classes_by_scheme = _pool_classes(self._policy)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        raise OutboundRefused("a proxy would connect where the outbound policy cannot check; none is used")

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:
        # Refused before any connection, and so before a pooled one is reused for this host.
        parts = urlsplit(request.url or "")
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        self._policy.precheck(scheme, host, parts.port or _DEFAULT_PORTS.get(scheme, 0))
        return super().send(request, *args, **kwargs)


def guarded_storage_transport(policy: OutboundPolicy, **options: Any) -> RequestsTransport:
    """A new azure-core transport (one per client, as the SDK makes them) that connects only where
    `policy` allows. `options`: azure-core's connection options (`connection_timeout`,
    `read_timeout`, `connection_data_block_size`, `connection_verify`, `connection_cert`), by
    default the storage SDK's."""
    unknown = set(options) - _TRANSPORT_OPTIONS
    if unknown:
        raise ValueError(f"not a transport option: {', '.join(sorted(unknown))}")
    session = requests.Session()
    session.trust_env = False  # no proxy, netrc or CA bundle from the environment
    adapter = _GuardedAdapter(policy)
    for prefix in ("http://", "https://"):
        session.mount(prefix, adapter)
    # Owned, so closing the client closes the session; `use_env_settings` off as on the session.
    return RequestsTransport(
        session=session, session_owner=True, use_env_settings=False, **{**_STORAGE_DEFAULTS, **options}
    )


def transport_options(client_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Take the transport's options out of a client's keyword arguments (they configure a
    transport the SDK builds, so with ours they must go to ours)."""
    return {key: client_kwargs.pop(key) for key in list(client_kwargs) if key in _TRANSPORT_OPTIONS}
