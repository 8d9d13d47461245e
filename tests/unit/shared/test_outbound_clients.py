"""Every outbound client of `shared/` under the outbound policy (issue 11, point 1): where HTTP and
storage clients are made, and the SMART JWKS fetch through the service's client.

Names resolve through a test resolver; the JWKS server listens on 127.0.0.1."""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Final

import pytest

from shared.outbound import OutboundPolicy
from shared.smart_auth import OAuthError, fetch_jwks
from shared.sources import make_http_client

pytestmark = pytest.mark.unit

SHARED: Final = Path(__file__).resolve().parents[3] / "shared"
_MADE: Final = re.compile(
    r"\bhttpx\.(?:Client|AsyncClient|HTTPTransport)\(|"
    r"\b(?:ContainerClient|BlobServiceClient|BlobClient|TableServiceClient|TableClient|QueueClient|"
    r"QueueServiceClient|SecretClient)(?:\.from_\w+)?\("
)
# Where `shared/` may make an HTTP or SDK client, and why that one is under the policy or exempt.
# A new place fails the test: route it through one of these, or add it here with its reason.
MAKERS: Final = {
    "sources/factory.py": "make_http_client: the one httpx client of jobs, on guarded_transport",
    "destinations/blob.py": "container_client: named accounts on outbound_azure's guarded transport",
    "outbound_azure.py": "the usage line of its docstring",
    "jobstore/azure.py": "the service's own storage (AzureWebJobsStorage)",
    "health.py": "the service's own storage (the health probe)",
    "secrets/keyvault.py": "the service's own Key Vault (KEY_VAULT_URL)",
    "validation.py": "the operator's command-line validator, with URLs the operator types",
}


def test_clients_are_made_only_where_the_policy_is_applied_or_the_target_is_the_services_own() -> None:
    found = {
        path.relative_to(SHARED).as_posix()
        for path in SHARED.rglob("*.py")
        if _MADE.search(path.read_text(encoding="utf-8"))
    }
    unexpected = found - set(MAKERS)
    assert not unexpected, f"clients made outside the reviewed places: {sorted(unexpected)}"


DNS: Final = {"keys.internal.example": ["10.0.0.5"]}


def resolve(host: str, port: int) -> Sequence[str]:
    return DNS.get(host, [host])


class _Keys(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        body = json.dumps({"keys": [{"kty": "EC", "kid": "k1"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def keys_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Keys)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def test_the_jwks_fetch_goes_through_the_services_guarded_client(keys_server: int) -> None:
    # http is allowed for loopback names only (check_jwks_url): 127.0.0.1 stands for a public host.
    url = f"http://127.0.0.1:{keys_server}/jwks.json"
    with make_http_client(OutboundPolicy.parse("127.0.0.1", resolve)) as http:
        assert fetch_jwks(http, url) == [{"kty": "EC", "kid": "k1"}]
    with make_http_client(OutboundPolicy.parse(None, resolve)) as http, pytest.raises(OAuthError) as refused:
        fetch_jwks(http, url)  # loopback is internal unless listed
    assert refused.value.error == "invalid_client" and refused.value.status == 401


def test_a_refused_jwks_url_is_invalid_client_and_the_reason_stays_in_the_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    policy = OutboundPolicy.parse(None, resolve)
    with (
        make_http_client(policy) as http,
        caplog.at_level(logging.WARNING),
        pytest.raises(OAuthError) as refused,
    ):
        fetch_jwks(http, "https://keys.internal.example/jwks.json")
    assert refused.value.error == "invalid_client"
    assert "outbound policy" in refused.value.description
    assert "10.0.0.5" not in refused.value.description  # the caller learns nothing of the network
    assert "10.0.0.5" in caplog.text
