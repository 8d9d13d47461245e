"""The one outbound policy: which URLs a job (or the service on its behalf) may call.

    OUTBOUND_ALLOW = "https://*.fhir.example.org, 10.20.0.0/16:8443, http://127.0.0.1"

Each entry is `[scheme://]host-pattern[:port]`, where the host pattern is a name with `*`
wildcards, an IP address, or a CIDR block. With no entry any public host may be called over
http or https; with entries, only what they name. Whatever the entries, an address that is
loopback, private, link-local (cloud metadata services live there), multicast, reserved or
unspecified is refused unless an entry names that host or that address explicitly (a bare `*`
does not): a key holder must not be able to probe the service's own network through a job.

The check runs where the connection is made (`guarded_transport`: httpx resolves, we check each
address and connect to the checked one), so a name that resolves differently between a check and
the connection (DNS rebinding) gains nothing. `check_url` is the same rule for a URL given up
front, to refuse it at submission with a message naming the field. Pure but for DNS resolution,
which is injected (`Resolver`) so tests never leave 127.0.0.1.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final
from urllib.parse import urlsplit

import httpcore
import httpx

from shared.errors import PermanentError

__all__ = [
    "LOOPBACK_HOSTS",
    "OutboundPolicy",
    "OutboundRefused",
    "Resolver",
    "guarded_transport",
    "system_resolver",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Sequence[str]]  # (host, port) -> IP addresses as text

SCHEMES: Final = frozenset({"http", "https"})
# The names of this machine, for the few places that trust a local peer more (plain SMTP, an http
# JWKS URL, a request's own origin as the public base on a developer's machine).
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "::1", "localhost"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
# Named on top of ipaddress's flags: Azure's wire server and the instance metadata endpoints.
_METADATA: Final = frozenset(
    ipaddress.ip_address(a) for a in ("168.63.129.16", "169.254.169.254", "fd00:ec2::254")
)


class OutboundRefused(PermanentError):
    """A URL or address the policy does not allow; the message says which rule refused it."""


def system_resolver(host: str, port: int) -> list[str]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise httpx.ConnectError(f"cannot resolve {host}: {exc.strerror}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _is_internal(address: IPAddress) -> bool:
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address in _METADATA or any(
        (
            address.is_loopback,
            address.is_private,
            address.is_link_local,
            address.is_multicast,
            address.is_reserved,
            address.is_unspecified,
        )
    )


@dataclass(frozen=True)
class _Entry:
    scheme: str | None
    host: str  # lower-case name pattern, or an address / network in text
    port: int | None
    network: ipaddress.IPv4Network | ipaddress.IPv6Network | None = None

    @property
    def explicit(self) -> bool:
        """Names hosts or addresses, not everything: may open internal addresses."""
        return self.host.strip("*.") != ""

    def matches_url(self, scheme: str | None, host: str, port: int) -> bool:
        if (self.scheme and scheme and self.scheme != scheme) or (self.port and self.port != port):
            return False
        if self.network is not None:
            address = _address(host)
            return address is not None and address in self.network
        return fnmatch.fnmatchcase(host, self.host)

    def matches_address(self, address: IPAddress, port: int) -> bool:
        if self.network is None or (self.port and self.port != port):
            return False
        return address in self.network


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return None


def _parse_entry(text: str) -> _Entry:
    scheme, sep, rest = text.partition("://")
    if not sep:
        scheme, rest = "", text
    scheme = scheme.lower()
    if scheme and scheme not in SCHEMES:
        raise ValueError(f"{text!r}: the scheme must be http or https")
    port: int | None = None
    host = rest
    if rest.startswith("["):  # [v6]:port or [v6]/prefix
        close = rest.find("]")
        host, tail = rest[1:close], rest[close + 1 :]
        if tail.startswith("/"):
            host, tail = host + tail.split(":")[0], ":".join(tail.split(":")[1:])
            tail = f":{tail}" if tail else ""
        if tail:
            port = _port(text, tail.removeprefix(":"))
    elif rest.count(":") == 1:
        host, _, port_text = rest.partition(":")
        port = _port(text, port_text)
    host = host.lower().rstrip("/")
    if not host:
        raise ValueError(f"{text!r}: no host")
    network = None
    if "/" in host or _address(host) is not None:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ValueError(f"{text!r}: not an address or CIDR block") from None
    elif not all(part and (part == "*" or part.replace("-", "").replace("*", "").isalnum())
                 for part in host.split(".")):  # fmt: skip
        raise ValueError(f"{text!r}: not a host name pattern")
    return _Entry(scheme or None, host, port, network)


def _port(text: str, port_text: str) -> int:
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError(f"{text!r}: the port must be a number between 1 and 65535")
    return int(port_text)


@dataclass(frozen=True)
class OutboundPolicy:
    entries: tuple[_Entry, ...] = ()
    resolver: Resolver = field(default=system_resolver, compare=False)

    @classmethod
    def parse(cls, text: str | None, resolver: Resolver = system_resolver) -> OutboundPolicy:
        """The policy of an `OUTBOUND_ALLOW` value; ValueError names the bad entry."""
        entries = tuple(_parse_entry(e.strip()) for e in (text or "").split(",") if e.strip())
        return cls(entries, resolver)

    def check_url(self, url: str) -> None:
        """Refuse (OutboundRefused) a URL the policy does not allow, resolving its host."""
        scheme, host, port = self._split(url)
        self.precheck(scheme, host, port)
        for address in self.resolver(host, port):
            self.check_address(scheme, host, port, address)

    def check_address(self, scheme: str | None, host: str, port: int, address_text: str) -> None:
        """Refuse connecting to `address_text` for `scheme://host:port` (scheme None: already checked)."""
        if scheme is not None and scheme not in SCHEMES:
            raise OutboundRefused(f"only http and https may be called, not {scheme}")
        address = _address(address_text)
        if address is None:
            raise OutboundRefused(f"{host}: resolved to something that is not an IP address")
        by_name = [e for e in self.entries if e.matches_url(scheme, host, port)]
        by_address = any(e.matches_address(address, port) for e in self.entries)
        if self.entries and not by_name and not by_address:
            # The address too: a name may pass the checks before the connection and fail here.
            where = f"{host}:{port}" if _address(host) == address else f"{host}:{port} (at {address})"
            raise OutboundRefused(f"{where} is not on the outbound allow-list (OUTBOUND_ALLOW)")
        if _is_internal(address) and not by_address and not any(e.explicit for e in by_name):
            raise OutboundRefused(
                f"{host} resolves to an internal address ({address}); "
                "only hosts listed in OUTBOUND_ALLOW may be reached there"
            )

    def _split(self, url: str) -> tuple[str, str, int]:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:
            raise OutboundRefused("the URL cannot be parsed") from None
        scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
        if scheme not in SCHEMES or not host:
            raise OutboundRefused(f"only http and https URLs with a host may be called, not {scheme or '?'}:")
        return scheme, host, port or _DEFAULT_PORTS[scheme]

    def precheck(self, scheme: str, host: str, port: int) -> None:
        """What can be refused before resolving: the scheme, and a name no entry can allow."""
        if scheme not in SCHEMES:
            raise OutboundRefused(f"only http and https may be called, not {scheme}")
        if any(e.network is not None for e in self.entries):
            return  # an address entry may allow the host once it is resolved
        if self.entries and not any(e.matches_url(scheme, host, port) for e in self.entries):
            raise OutboundRefused(f"{host}:{port} is not on the outbound allow-list (OUTBOUND_ALLOW)")


class _GuardedBackend(httpcore.NetworkBackend):
    """Resolves, checks every address against the policy, and connects to a checked one."""

    def __init__(self, policy: OutboundPolicy, inner: httpcore.NetworkBackend) -> None:
        self._policy = policy
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        last: Exception | None = None
        addresses = self._policy.resolver(host, port)
        for address in addresses:
            # The scheme was checked per request (`_GuardedTransport`); here host, port and address.
            self._policy.check_address(None, host.lower(), port, address)
        for address in addresses:
            try:
                return self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last = exc
        raise last or httpcore.ConnectError(f"{host}: no address to connect to")

    def connect_unix_socket(self, *args: Any, **kwargs: Any) -> httpcore.NetworkStream:
        raise OutboundRefused("unix sockets are never called")

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class _GuardedTransport(httpx.HTTPTransport):
    def __init__(self, policy: OutboundPolicy, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        backend = _GuardedBackend(policy, httpcore.SyncBackend())
        # httpx builds its pool without a way to pass a network backend: rebuild it with ours.
        pool = self._pool
        self._pool = httpcore.ConnectionPool(
            ssl_context=pool._ssl_context,
            max_connections=pool._max_connections,
            max_keepalive_connections=pool._max_keepalive_connections,
            keepalive_expiry=pool._keepalive_expiry,
            http1=pool._http1,
            http2=pool._http2,
            retries=pool._retries,
            network_backend=backend,
        )
        self._policy = policy

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        # Refused before any connection (and so before any pooled connection is reused).
        url = request.url
        self._policy.precheck(url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme, 0))
        return super().handle_request(request)


def guarded_transport(policy: OutboundPolicy, **kwargs: Any) -> httpx.HTTPTransport:
    """An httpx transport that connects only where `policy` allows (no proxies: `trust_env` off)."""
    return _GuardedTransport(policy, trust_env=False, **kwargs)
