"""The outbound policy: allow-list entries, internal addresses, and the guarded transport.

Names resolve through a test resolver, so nothing leaves 127.0.0.1; the transport test connects
to a real server on 127.0.0.1 under a made-up name."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from shared.outbound import OutboundPolicy, OutboundRefused, guarded_transport

pytestmark = pytest.mark.unit

DNS = {
    "fhir.example.org": ["203.0.113.10"],  # documentation range: treated as public here
    "api.partner.example": ["198.51.100.7"],
    "sneaky.example": ["10.1.2.3"],
    "rebind.example": ["198.51.100.8", "127.0.0.1"],
    "metadata.example": ["169.254.169.254"],
    "mapped.example": ["::ffff:127.0.0.1"],
    "lab.local.example": ["127.0.0.1"],
}


def resolve(host: str, port: int) -> Sequence[str]:
    if host in DNS:
        return DNS[host]
    return [host]  # an IP literal


def policy(text: str | None) -> OutboundPolicy:
    return OutboundPolicy.parse(text, resolver=resolve)


@pytest.fixture(autouse=True)
def public_documentation_ranges(monkeypatch: pytest.MonkeyPatch) -> None:
    # 203.0.113.0/24 and 198.51.100.0/24 are "reserved for documentation", which ipaddress
    # counts as private; in these tests they stand for public hosts.
    import shared.outbound as outbound

    real = outbound._is_internal
    monkeypatch.setattr(
        outbound, "_is_internal", lambda a: not str(a).startswith(("203.0.113.", "198.51.100.")) and real(a)
    )


def test_without_entries_public_hosts_pass_and_internal_ones_are_refused() -> None:
    open_policy = policy(None)
    open_policy.check_url("https://fhir.example.org/r4")
    for url in ("http://127.0.0.1:8080/fhir", "https://sneaky.example/", "http://metadata.example/latest",
                "http://[::1]/", "http://mapped.example/", "http://0.0.0.0/", "https://rebind.example/"):  # fmt: skip
        with pytest.raises(OutboundRefused, match="internal address"):
            open_policy.check_url(url)


@pytest.mark.parametrize(
    "url", ["ftp://fhir.example.org/x", "file:///etc/passwd", "http:///nohost", "gopher://x"]
)
def test_only_http_and_https_with_a_host(url: str) -> None:
    with pytest.raises(OutboundRefused):
        policy(None).check_url(url)


def test_entries_confine_hosts_schemes_and_ports() -> None:
    p = policy("https://*.example.org, api.partner.example:8443")
    p.check_url("https://fhir.example.org/r4")
    p.check_url("https://api.partner.example:8443/upload")
    p.check_url("http://api.partner.example:8443/upload")  # no scheme in the entry: either
    for url in ("http://fhir.example.org/r4", "https://api.partner.example/upload", "https://evil.example/"):
        with pytest.raises(OutboundRefused, match="not on the outbound allow-list"):
            p.check_url(url)


def test_internal_addresses_need_an_explicit_entry() -> None:
    policy("http://127.0.0.1").check_url("http://127.0.0.1:8080/fhir")
    policy("127.0.0.1").check_url("http://lab.local.example:9000/")  # the address is named
    policy("10.0.0.0/8:443").check_url("https://sneaky.example/")
    policy("lab.local.example").check_url("http://lab.local.example/")  # the name is named
    with pytest.raises(OutboundRefused, match="internal address"):
        policy("*").check_url("http://127.0.0.1/")  # a bare wildcard opens nothing internal
    policy("*.example").check_url("https://sneaky.example/")  # a listed domain is the operator's word


@pytest.mark.parametrize("entry", ["ftp://x", "host:99999", "10.0.0.0/99", "bad host!", "http://"])
def test_bad_entries_are_named(entry: str) -> None:
    with pytest.raises(ValueError, match=entry.split(":")[0][:4]):
        OutboundPolicy.parse(f"fhir.example.org, {entry}")


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def local_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_transport_checks_where_it_connects(local_server: int) -> None:
    allowed = OutboundPolicy.parse("lab.local.example", resolver=resolve)
    with httpx.Client(transport=guarded_transport(allowed)) as client:
        assert client.get(f"http://lab.local.example:{local_server}/").text == "hello"
    refused = OutboundPolicy.parse(None, resolver=resolve)
    with httpx.Client(transport=guarded_transport(refused)) as client:
        with pytest.raises(OutboundRefused, match="internal address"):
            client.get(f"http://lab.local.example:{local_server}/")
        with pytest.raises(OutboundRefused, match="internal address"):
            client.get(f"http://127.0.0.1:{local_server}/")
