"""BlobItemSource without Azurite: name rules, and storage faults served by a local stand-in.

The stand-in is the test file server answering the SDK's requests with the status and
`x-ms-error-code` a storage account sends when throttling, failing or missing a blob; reading
real blobs is tested against Azurite (tests/azurite/test_transfer.py).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.errors import PermanentError, RetryAfterError, TransientError, ValidationError
from shared.items.blob import BlobItemSource
from tests.support.azurite import ACCOUNT, ACCOUNT_KEY
from tests.support.file_server import FileServer, serve_files
from tests.support.ports import free_port

BLOB_PATH = f"/{ACCOUNT}/source/in/a.bin"


def _connection(port: int) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT}"
    )


@pytest.fixture
def storage() -> Iterator[FileServer]:
    with serve_files() as server:
        yield server


def _source(port: int) -> BlobItemSource:
    return BlobItemSource.connect(_connection(port), "source", retry_total=0)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("", "non-empty"),
        ("/in/a.bin", "start or end"),
        ("in/", "start or end"),
        ("in//a.bin", "segments"),
        ("in/../secret.bin", "segments"),
        ("./a.bin", "segments"),
        ("in/a\nb", "control"),
        ("x" * 1025, "1024"),
    ],
)
def test_blob_paths_that_would_name_another_blob_are_refused(item: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message) as caught:
        _source(free_port()).check(item)
    assert caught.value.field == "item"


@pytest.mark.unit
def test_ordinary_blob_paths_pass() -> None:
    source = _source(free_port())
    for item in ("a.bin", "in/2024/über report.csv", "in/a.b.c", "x" * 1024):
        source.check(item)


@pytest.mark.unit
def test_unreachable_storage_is_transient() -> None:
    with pytest.raises(TransientError, match="storage unreachable"):
        _source(free_port()).stat("in/a.bin")


@pytest.mark.runtime
@pytest.mark.parametrize(("status", "code"), [(503, "ServerBusy"), (500, "InternalError")])
def test_throttling_and_server_errors_are_transient(storage: FileServer, status: int, code: str) -> None:
    storage.status[BLOB_PATH] = (status, {"x-ms-error-code": code})
    with pytest.raises(TransientError, match=f"HTTP {status} "):
        _source(storage.port).stat("in/a.bin")


@pytest.mark.runtime
def test_throttling_with_retry_after_says_when(storage: FileServer) -> None:
    storage.status[BLOB_PATH] = (503, {"x-ms-error-code": "ServerBusy", "Retry-After": "12"})
    with pytest.raises(RetryAfterError) as caught:
        _source(storage.port).stat("in/a.bin")
    assert caught.value.retry_after_s == 12.0


@pytest.mark.runtime
def test_a_missing_blob_is_permanent(storage: FileServer) -> None:
    storage.status[BLOB_PATH] = (404, {"x-ms-error-code": "BlobNotFound"})
    with pytest.raises(PermanentError, match="no such blob 'in/a.bin' in container 'source'") as caught:
        _source(storage.port).stat("in/a.bin")
    assert not isinstance(caught.value, TransientError)


@pytest.mark.runtime
def test_a_refused_credential_is_permanent(storage: FileServer) -> None:
    storage.status[BLOB_PATH] = (403, {"x-ms-error-code": "AuthenticationFailed"})
    with pytest.raises(PermanentError, match="HTTP 403") as caught:
        _source(storage.port).stat("in/a.bin")
    assert not isinstance(caught.value, TransientError)
