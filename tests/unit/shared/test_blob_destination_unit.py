"""BlobDestination without a storage server: block ids, connection parsing, client reuse, URL
hygiene and the mapping of storage failures onto TransientError / PermanentError.

Failures are produced by a canned transport under the real SDK pipeline (no mocks of our code).
"""

from __future__ import annotations

import base64
import traceback
from typing import Any

import pytest
import requests
from azure.core.pipeline.transport import HttpRequest, RequestsTransport, RequestsTransportResponse
from hypothesis import given
from hypothesis import strategies as st
from requests.structures import CaseInsensitiveDict

from shared.config import Settings
from shared.contracts import BlobDestinationSpec
from shared.destinations.base import BLOCK_ID_LENGTH, Destination, block_id
from shared.destinations.blob import BlobDestination, container_client
from shared.destinations.factory import make_destination
from shared.errors import PermanentError, RetryAfterError, TransientError
from tests.support.ports import free_port

pytestmark = pytest.mark.unit


def _chain_text(exc: BaseException) -> str:
    """Every message a logged traceback would show: the error and its causes and contexts."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None:
        parts.extend(traceback.format_exception_only(seen))
        seen = seen.__cause__ or seen.__context__
    return "".join(parts)


SAS = "sv=2024-01-01&sr=c&sp=racwdl&sig=TOPSECRETSIGNATURE"


@given(
    st.from_regex(r"[A-Z][A-Za-z]{1,63}", fullmatch=True), st.integers(1, 10**6), st.integers(0, 10**12 - 1)
)
def test_block_ids_have_one_length_and_fit_azure_limits(resource_type: str, sequence: int, page: int) -> None:
    block = block_id(resource_type, sequence, page)
    assert len(block) == BLOCK_ID_LENGTH <= 64  # Azure: at most 64 bytes before base64
    assert len(base64.b64encode(block.encode())) == 44  # what the SDK sends: equal-length ids
    assert block == block_id(resource_type, sequence, page)  # deterministic: a re-run replaces


def test_block_ids_differ_by_type_file_and_page() -> None:
    ids = {block_id(t, s, p) for t in ("Patient", "Observation") for s in (1, 2) for p in range(50)}
    assert len(ids) == 200
    assert block_id("Patient", 1, 7).endswith("-000000000007")  # the page stays readable


@pytest.mark.parametrize(("sequence", "page"), [(0, 0), (1, -1), (1, 10**12)])
def test_block_id_arguments_are_checked(sequence: int, page: int) -> None:
    with pytest.raises(ValueError):
        block_id("Patient", sequence, page)


@pytest.mark.parametrize(
    ("connection", "expected_url"),
    [
        (
            f"http://127.0.0.1:10000/devstoreaccount1/exports?{SAS}",
            "http://127.0.0.1:10000/devstoreaccount1/exports/p/F-1.ndjson",
        ),
        (
            f"http://127.0.0.1:10000/devstoreaccount1?{SAS}",
            "http://127.0.0.1:10000/devstoreaccount1/exports/p/F-1.ndjson",
        ),
        (
            f"https://acct.blob.core.windows.net/?{SAS}",
            "https://acct.blob.core.windows.net/exports/p/F-1.ndjson",
        ),
        (
            f"https://acct.blob.core.windows.net/exports?{SAS}",
            "https://acct.blob.core.windows.net/exports/p/F-1.ndjson",
        ),
        ("https://acct.blob.core.windows.net", "https://acct.blob.core.windows.net/exports/p/F-1.ndjson"),
        ("UseDevelopmentStorage=true", "http://127.0.0.1:10000/devstoreaccount1/exports/p/F-1.ndjson"),
    ],
)
def test_connections_resolve_to_the_container_and_urls_carry_no_sas(
    connection: str, expected_url: str
) -> None:
    destination = BlobDestination.connect(connection, "exports", "p")
    assert isinstance(destination, Destination)
    assert destination.url("F-1.ndjson") == expected_url


def test_account_url_without_sas_uses_the_app_identity() -> None:
    client = container_client("https://acct.blob.core.windows.net", "exports")
    assert type(client.credential).__name__ == "DefaultAzureCredential"


def test_a_sas_for_another_container_is_refused() -> None:
    with pytest.raises(PermanentError, match="another container"):
        BlobDestination.connect(f"https://acct.blob.core.windows.net/other?{SAS}", "exports")


def test_a_broken_connection_string_is_permanent_and_not_quoted() -> None:
    with pytest.raises(PermanentError) as info:
        BlobDestination.connect("AccountName=a;AccountKey=TOPSECRETKEY;Nonsense", "exports")
    assert "TOPSECRETKEY" not in _chain_text(info.value)


def test_clients_are_cached_per_connection_and_container() -> None:
    a = container_client("UseDevelopmentStorage=true", "exports")
    assert container_client("UseDevelopmentStorage=true", "exports") is a
    assert container_client("UseDevelopmentStorage=true", "other") is not a
    # Different SAS tokens for one container must not share a client.
    sas_a = container_client(f"https://acct.blob.core.windows.net/exports?{SAS}", "exports")
    sas_b = container_client(f"https://acct.blob.core.windows.net/exports?{SAS}2", "exports")
    assert sas_a is not sas_b


def test_factory_uses_the_secret_or_falls_back_to_export_storage() -> None:
    settings = Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true"})
    spec = BlobDestinationSpec(container="exports", path_prefix="x")
    fallback = make_destination(spec, None, settings)
    assert fallback.url("F-1.ndjson") == "http://127.0.0.1:10000/devstoreaccount1/exports/x/F-1.ndjson"
    with_sas = make_destination(spec, f"https://acct.blob.core.windows.net/exports?{SAS}", settings)
    assert with_sas.url("F-1.ndjson") == "https://acct.blob.core.windows.net/exports/x/F-1.ndjson"
    with pytest.raises(ValueError, match="resolved"):
        make_destination(BlobDestinationSpec(container="exports", secret_name="n"), None, settings)


def test_empty_pages_are_not_staged() -> None:
    with pytest.raises(ValueError):
        BlobDestination.connect("UseDevelopmentStorage=true", "exports").stage("F-1.ndjson", "b", b"")


def test_unreachable_storage_is_transient_and_the_sas_stays_secret() -> None:
    connection = f"http://127.0.0.1:{free_port()}/devstoreaccount1/exports?{SAS}"
    destination = BlobDestination.connect(connection, "exports", retry_total=0)
    with pytest.raises(TransientError) as info:
        destination.stage("F-1.ndjson", "b", b"{}\n")
    assert "unreachable" in str(info.value)
    assert "TOPSECRET" not in _chain_text(info.value)


class CannedTransport(RequestsTransport):
    """Answers requests from a script of (status, headers, body), repeating the last entry, and
    records what was asked: the SDK pipeline runs for real, only the network is canned."""

    def __init__(self, *script: tuple[int, dict[str, str], bytes]) -> None:
        super().__init__()
        self.script = list(script)
        self.seen: list[tuple[str, str]] = []

    def send(self, request: HttpRequest, **kwargs: Any) -> RequestsTransportResponse:
        self.seen.append((request.method, request.url))
        status, headers, body = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        response = requests.Response()
        response.status_code = status
        response.reason = "Canned"
        response.headers = CaseInsensitiveDict({"Content-Length": str(len(body)), **headers})
        response._content = body
        response.url = request.url
        return RequestsTransportResponse(request, response)


def _destination(status: int, **headers: str) -> BlobDestination:
    return _scripted(CannedTransport((status, headers, b"")))


def _scripted(transport: CannedTransport) -> BlobDestination:
    connection = f"https://acct{id(transport)}.blob.core.windows.net/exports?{SAS}"
    return BlobDestination.connect(connection, "exports", retry_total=0, transport=transport)


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [
        (500, {}, TransientError),
        (503, {"x-ms-error-code": "ServerBusy"}, TransientError),
        (429, {}, TransientError),
        (409, {"x-ms-error-code": "ContainerBeingDeleted"}, TransientError),
        (403, {"x-ms-error-code": "AuthorizationPermissionMismatch"}, PermanentError),
        (401, {}, PermanentError),
        (404, {"x-ms-error-code": "ContainerNotFound"}, PermanentError),
        (400, {"x-ms-error-code": "InvalidBlockList"}, PermanentError),
    ],
)
def test_storage_statuses_map_to_the_error_tree(
    status: int, headers: dict[str, str], error: type[Exception]
) -> None:
    destination = _destination(status, **headers)
    for call in (
        lambda: destination.stage("F-1.ndjson", "b", b"{}\n"),
        lambda: destination.commit("F-1.ndjson", ["b"], {"job": "j"}),
    ):
        with pytest.raises(error) as info:
            call()
        assert f"HTTP {status}" in str(info.value)
        assert "TOPSECRET" not in str(info.value)
        if error is PermanentError:
            assert not isinstance(info.value, TransientError)


def test_retry_after_is_passed_on() -> None:
    with pytest.raises(RetryAfterError) as info:
        _destination(503, **{"Retry-After": "7"}).stage("F-1.ndjson", "b", b"{}\n")
    assert info.value.retry_after_s == 7.0


def test_metadata_names_must_be_identifiers() -> None:
    with pytest.raises(PermanentError, match="metadata"):
        _destination(201).commit("F-1.ndjson", ["b"], {"not valid": "x"})


def test_delete_drops_staged_blocks_of_a_never_committed_file() -> None:
    block_list = (
        b'<?xml version="1.0" encoding="utf-8"?><BlockList><CommittedBlocks />'
        b"<UncommittedBlocks><Block><Name>YWFhYQ==</Name><Size>6</Size></Block></UncommittedBlocks></BlockList>"
    )
    xml = {"Content-Type": "application/xml"}
    transport = CannedTransport(
        (404, {"x-ms-error-code": "BlobNotFound"}, b""),  # Delete Blob: nothing committed
        (200, xml, block_list),  # Get Block List: one staged block
        (201, {}, b""),  # Put Block List []: an empty blob, staged blocks dropped
        (202, {}, b""),  # Delete Blob
    )
    _scripted(transport).delete(["F-1.ndjson"])
    methods = [method for method, _ in transport.seen]
    assert methods == ["DELETE", "GET", "PUT", "DELETE"]
    assert "comp=blocklist" in transport.seen[2][1]
