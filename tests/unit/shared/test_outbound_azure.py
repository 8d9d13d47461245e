"""The outbound policy at connect time for storage clients of an account a request names.

Names resolve through a test resolver and every socket the guarded transport opens is checked to
go to 127.0.0.1 (`only_loopback`), so nothing leaves the machine even if a check were missing;
the servers are small ones on 127.0.0.1 (Azurite end to end: tests/azurite/test_outbound_storage.py).
"""

from __future__ import annotations

import dataclasses
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from azure.core.exceptions import ServiceRequestError
from azure.core.pipeline import Pipeline
from azure.core.pipeline.policies import RedirectPolicy
from azure.core.pipeline.transport import HttpRequest

import shared.destinations.blob as blob_module
import shared.outbound_azure as outbound_azure
from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.blob import BlobDestination, container_client
from shared.destinations.factory import make_destination
from shared.errors import PermanentError, TransientError
from shared.outbound import OutboundPolicy, OutboundRefused
from shared.outbound_azure import guarded_storage_transport
from shared.storage_policy import DestinationRefused

pytestmark = pytest.mark.unit

PUBLIC = "20.60.2.2"  # an Azure storage address: public, and never connected to here
PARTNER = "DefaultEndpointsProtocol=https;AccountName=partner;AccountKey=a2V5;EndpointSuffix=core.windows.net"
PARTNER_HOST = "partner.blob.core.windows.net"


class Dns:
    """A resolver whose answers a test sets per name, in turn (the last one repeats): DNS
    rebinding is a name answered differently between calls. Records every name asked."""

    def __init__(self, answers: dict[str, list[Sequence[str]]] | None = None) -> None:
        self.answers = answers or {}
        self.asked: list[str] = []

    def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked.append(host)
        queue = self.answers.get(host)
        if queue is None:
            return [host]  # an IP literal
        return queue.pop(0) if len(queue) > 1 else queue[0]


@pytest.fixture(autouse=True)
def only_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every address the guarded transport connects to; anything but 127.0.0.1 fails the test."""
    opened: list[str] = []
    real = outbound_azure._connect

    def connect(address: tuple[str, int], *args: Any, **kwargs: Any) -> Any:
        opened.append(address[0])
        assert address[0] == "127.0.0.1", f"the transport tried to connect to {address[0]}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(outbound_azure, "_connect", connect)
    return opened


def settings_with(dns: Dns, allow: str | None = None) -> Settings:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    return dataclasses.replace(settings, outbound=OutboundPolicy.parse(allow, dns))


# --- rebinding: a name checked at submission that resolves elsewhere when the client connects ---


@pytest.mark.parametrize("internal", ["10.0.0.5", "169.254.169.254"])
def test_a_name_that_rebinds_to_an_internal_address_is_refused_at_connect_time(internal: str) -> None:
    # Public for the submission check and for the check where the client is made, then internal.
    dns = Dns({PARTNER_HOST: [[PUBLIC], [PUBLIC], [internal]]})
    settings = settings_with(dns)
    spec = BlobDestinationSpec(container="out", secret_name="dest")
    settings.destination_policy.check(PARTNER, "out")  # what submission does: passes
    destination = make_destination(spec, PARTNER, settings)  # checks again: passes
    asked = len(dns.asked)
    # The SDK's default retries stay on: a refusal must not be retried.
    with pytest.raises(OutboundRefused, match=f"internal address \\({internal}\\)") as refused:
        destination.stage("Patient-1.ndjson", "b", b"{}\n")
    assert isinstance(refused.value, PermanentError) and not isinstance(refused.value, TransientError)
    assert dns.asked[asked:] == [PARTNER_HOST]  # one connection attempt, no retry storm


def test_every_address_of_a_name_is_checked_before_connecting(only_loopback: list[str]) -> None:
    dns = Dns({"mixed.example": [["127.0.0.1", "10.0.0.5"]]})
    client = container_client(
        "http://mixed.example/c?sig=x", "c", outbound=OutboundPolicy.parse("127.0.0.1", dns), retry_total=0
    )
    with pytest.raises(OutboundRefused, match=r"at 10\.0\.0\.5\) is not on the outbound allow-list"):
        client.exists()
    assert only_loopback == []  # the allowed address was not tried either


def test_a_host_off_the_allow_list_is_refused_before_it_is_resolved() -> None:
    dns = Dns()
    client = container_client(
        "https://evil.example/c?sig=x", "c", outbound=OutboundPolicy.parse("*.partner.example", dns)
    )
    with pytest.raises(OutboundRefused, match="allow-list"):
        client.exists()
    assert dns.asked == []


def test_a_name_that_does_not_resolve_is_transient() -> None:
    def unresolvable(host: str, port: int) -> Sequence[str]:
        raise httpx.ConnectError(f"cannot resolve {host}")

    connection = "https://gone.example/c?sig=x"
    destination = BlobDestination.connect(
        connection, "c", outbound=OutboundPolicy.parse(None, unresolvable), retry_total=0
    )
    with pytest.raises(TransientError, match="unreachable"):
        destination.check_connection()


# --- redirects, proxies, TLS ---------------------------------------------------------------------


class _RedirectServer(ThreadingHTTPServer):
    """Answers every request 307 to `http://internal.example:<port>` + its path; records paths."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Redirect)
        self.seen: list[str] = []


class _Redirect(BaseHTTPRequestHandler):
    server: _RedirectServer

    def _answer(self) -> None:
        self.server.seen.append(self.path)
        self.send_response(307)
        self.send_header("Location", f"http://internal.example:{self.server.server_address[1]}{self.path}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_HEAD = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def redirecting() -> Iterator[_RedirectServer]:
    server = _RedirectServer()
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_storage_client_for_a_named_account_follows_no_redirect(redirecting: _RedirectServer) -> None:
    port = redirecting.server_address[1]
    dns = Dns({"internal.example": [["10.0.0.5"]]})
    destination = BlobDestination.connect(
        f"http://127.0.0.1:{port}/devstoreaccount1/c?sig=x", "c",
        outbound=OutboundPolicy.parse("127.0.0.1", dns), retry_total=0,
    )  # fmt: skip
    with pytest.raises(PermanentError, match="HTTP 307"):
        destination.stage("F-1.ndjson", "b", b"{}\n")
    assert len(redirecting.seen) == 1
    assert "internal.example" not in dns.asked


def test_a_redirect_the_pipeline_follows_is_checked_where_it_connects(
    redirecting: _RedirectServer, only_loopback: list[str]
) -> None:
    # Should a client ever follow redirects, the new host meets the policy like the first.
    port = redirecting.server_address[1]
    dns = Dns({"internal.example": [["10.0.0.5"]]})
    transport = guarded_storage_transport(OutboundPolicy.parse("127.0.0.1", dns))
    pipeline = Pipeline(transport, policies=[RedirectPolicy()])
    with pipeline, pytest.raises(OutboundRefused, match="internal.example"):
        pipeline.run(HttpRequest("GET", f"http://127.0.0.1:{port}/x"))
    assert dns.asked == ["127.0.0.1", "internal.example"]
    assert only_loopback == ["127.0.0.1"]


def test_no_proxy_is_used() -> None:
    transport = guarded_storage_transport(OutboundPolicy.parse("127.0.0.1", Dns()))
    with pytest.raises(OutboundRefused, match="proxy"):
        transport.send(HttpRequest("GET", "http://127.0.0.1:9/x"), proxies={"http": "http://127.0.0.1:3128"})
    assert transport.session is not None and transport.session.trust_env is False


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "5")
        self.end_headers()
        self.wfile.write(b"hello")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Callable[[str], tuple[int, str, list[str | None]]]]:
    """`serve(name)`: an HTTPS server on 127.0.0.1 with a certificate for `name`; its port, the
    CA file that trusts it and the SNI names clients sent."""
    ca = trustme.CA()
    ca_file = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    servers: list[ThreadingHTTPServer] = []

    def serve(name: str) -> tuple[int, str, list[str | None]]:
        sni: list[str | None] = []

        def record_sni(sock: ssl.SSLObject, server_name: str | None, ctx: ssl.SSLContext) -> None:
            sni.append(server_name)

        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(name).configure_cert(context)
        context.sni_callback = record_sni  # type: ignore[assignment]
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
        server.socket = context.wrap_socket(server.socket, server_side=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server.server_address[1], str(ca_file), sni

    yield serve
    for server in servers:
        server.shutdown()
        server.server_close()


def test_tls_keeps_the_name_while_the_socket_goes_to_the_checked_address(
    tls_server: Callable[[str], tuple[int, str, list[str | None]]], only_loopback: list[str]
) -> None:
    port, ca_file, sni = tls_server("store.partner.example")
    dns = Dns({"store.partner.example": [["127.0.0.1"]]})
    transport = guarded_storage_transport(
        OutboundPolicy.parse("store.partner.example", dns), connection_verify=ca_file
    )
    with Pipeline(transport) as pipeline:
        response = pipeline.run(HttpRequest("GET", f"https://store.partner.example:{port}/")).http_response
        assert response.status_code == 200 and response.text() == "hello"
    assert sni == ["store.partner.example"] and only_loopback == ["127.0.0.1"]


def test_a_certificate_for_another_name_is_refused(
    tls_server: Callable[[str], tuple[int, str, list[str | None]]],
) -> None:
    port, ca_file, _ = tls_server("elsewhere.example")
    dns = Dns({"store.partner.example": [["127.0.0.1"]]})
    transport = guarded_storage_transport(
        OutboundPolicy.parse("store.partner.example", dns), connection_verify=ca_file
    )
    with (
        Pipeline(transport) as pipeline,
        pytest.raises(ServiceRequestError, match="(?i)certificate|hostname"),
    ):
        pipeline.run(HttpRequest("GET", f"https://store.partner.example:{port}/"))


# --- whose storage is guarded, and the service's identity ----------------------------------------


def test_only_accounts_named_in_settings_are_exempt() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true",
                                  "EXPORT_STORAGE_CONNECTION": "https://svc.blob.core.windows.net"})  # fmt: skip
    policy = settings.destination_policy
    assert policy.outbound_for(None) is None
    assert policy.outbound_for("https://svc.blob.core.windows.net/exports") is None
    assert policy.outbound_for("UseDevelopmentStorage=true") is None
    assert policy.outbound_for(PARTNER) is settings.outbound
    assert policy.outbound_for("https://partner.blob.core.windows.net/c?sig=x") is settings.outbound


def test_the_services_identity_is_never_attached_to_an_account_not_named_in_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    lent: list[str] = []

    class Identity:
        def get_token(self, *scopes: str, **kwargs: Any) -> Any:
            raise AssertionError("no request is made here")

    def default_credential() -> Identity:
        lent.append("identity")
        return Identity()

    monkeypatch.setattr(blob_module, "_default_credential", default_credential)
    monkeypatch.setattr(blob_module, "_clients", OrderedDict())  # no client from another test
    guarded = OutboundPolicy.parse(None, Dns())
    with pytest.raises(DestinationRefused, match="identity"):
        container_client("https://partner.blob.core.windows.net/c", "c", outbound=guarded)
    settings = settings_with(Dns({"public.example.com": [[PUBLIC]]}))
    with pytest.raises(DestinationRefused, match="identity"):  # the rule where destinations are made
        make_destination(
            BlobDestinationSpec(container="out", secret_name="s"), "https://public.example.com/out", settings
        )
    assert lent == []
    # The service's own account (named in settings) is signed with it.
    own = "https://svc.blob.core.windows.net"
    settings = dataclasses.replace(settings, export_storage_connection=own)
    make_destination(BlobDestinationSpec(container="exports"), None, settings)
    assert lent == ["identity"]


def test_clients_under_a_policy_are_cached_apart_from_unguarded_ones() -> None:
    connection = "https://partner.blob.core.windows.net/c?sig=cache"
    guarded = OutboundPolicy.parse(None, Dns())
    plain = container_client(connection, "c")
    assert container_client(connection, "c", outbound=guarded) is container_client(
        connection, "c", outbound=guarded
    )
    assert container_client(connection, "c", outbound=guarded) is not plain
    other_resolver = OutboundPolicy.parse(None, Dns())  # equal entries, another resolver
    assert container_client(connection, "c", outbound=other_resolver) is not container_client(
        connection, "c", outbound=guarded
    )
    with pytest.raises(ValueError, match="own transport"):
        container_client(connection + "2", "c", outbound=guarded, transport=object())
