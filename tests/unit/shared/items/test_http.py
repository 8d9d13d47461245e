"""HttpItemSource against a file server on 127.0.0.1, through the service's policy-bound client."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from shared.errors import PermanentError, RetryAfterError, TransientError, ValidationError
from shared.items.base import CHUNK_SIZE
from shared.items.http import HttpItemSource
from shared.outbound import OutboundPolicy, OutboundRefused
from shared.sources import make_http_client
from tests.support.file_server import FileServer, serve_files

pytestmark = pytest.mark.runtime

TOKEN = "item-token-value"


@pytest.fixture
def files() -> Iterator[FileServer]:
    with serve_files() as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with make_http_client(OutboundPolicy.parse("127.0.0.1")) as http:
        yield http


@pytest.fixture
def items(client: httpx.Client) -> HttpItemSource:
    return HttpItemSource(client, bearer_token=TOKEN)


def _read(items: HttpItemSource, url: str, offset: int = 0, version: str | None = None) -> bytes:
    with items.open(url, offset=offset, version=version) as chunks:
        return b"".join(chunks)


def test_stat_reads_length_type_and_etag_and_sends_the_token(
    files: FileServer, items: HttpItemSource
) -> None:
    url = files.put("/a/report.csv", b"x,y\n1,2\n", "text/csv")
    info = items.stat(url)
    assert (info.name, info.size, info.content_type) == (url, 8, "text/csv")
    assert info.version == files.files["/a/report.csv"].etag
    method, _, headers = files.requests[-1]
    assert method == "HEAD"
    assert headers["Authorization"] == f"Bearer {TOKEN}"
    assert headers["Accept-Encoding"] == "identity"


def test_stat_falls_back_to_get_when_head_is_not_allowed(files: FileServer, items: HttpItemSource) -> None:
    files.head = False
    url = files.put("/f.bin", b"12345")
    assert items.stat(url).size == 5
    assert [m for m, _, _ in files.requests] == ["HEAD", "GET"]


def test_open_streams_in_chunks_and_from_an_offset(files: FileServer, items: HttpItemSource) -> None:
    data = bytes(range(256)) * (CHUNK_SIZE // 128 + 3)
    url = files.put("/big.bin", data)
    with items.open(url) as chunks:
        sizes = [len(c) for c in chunks]
    assert sum(sizes) == len(data) and max(sizes) <= CHUNK_SIZE and len(sizes) >= 2
    version = items.stat(url).version
    assert _read(items, url, offset=1000, version=version) == data[1000:]
    assert files.requests[-1][2]["Range"] == "bytes=1000-"
    assert _read(items, url, offset=len(data), version=version) == b""  # 416: nothing left
    files.ranges = False
    assert _read(items, url, offset=1000, version=version) == data[1000:]  # 200: skipped locally


def test_a_changed_item_fails_transiently(files: FileServer, items: HttpItemSource) -> None:
    url = files.put("/f.bin", b"version one")
    version = items.stat(url).version
    files.put("/f.bin", b"version two, longer")
    with pytest.raises(TransientError, match="changed since it was listed"):
        _read(items, url, version=version)
    with pytest.raises(TransientError, match="changed since it was listed"):
        _read(items, url, offset=3, version=version)  # If-Range: the server sends all of the new one


@pytest.mark.parametrize("status", [404, 410, 403, 400])
def test_client_errors_are_permanent(files: FileServer, items: HttpItemSource, status: int) -> None:
    files.status["/f.bin"] = (status, {})
    with pytest.raises(PermanentError, match=f"HTTP {status}") as caught:
        items.stat(files.url("/f.bin"))
    assert not isinstance(caught.value, TransientError)
    with pytest.raises(PermanentError, match=f"GET .*HTTP {status}"):
        _read(items, files.url("/f.bin"))


@pytest.mark.parametrize("status", [503, 500, 502, 408])
def test_server_errors_are_transient(files: FileServer, items: HttpItemSource, status: int) -> None:
    files.status["/f.bin"] = (status, {})
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        items.stat(files.url("/f.bin"))
    with pytest.raises(TransientError, match=f"HTTP {status}"):
        _read(items, files.url("/f.bin"))


def test_throttling_says_when_to_come_back(files: FileServer, items: HttpItemSource) -> None:
    files.status["/f.bin"] = (429, {"Retry-After": "7"})
    with pytest.raises(RetryAfterError) as caught:
        items.stat(files.url("/f.bin"))
    assert caught.value.retry_after_s == 7.0


def test_redirects_are_not_followed(files: FileServer, items: HttpItemSource) -> None:
    files.put("/real.bin", b"data")
    files.status["/moved.bin"] = (302, {"Location": files.url("/real.bin")})
    with pytest.raises(PermanentError, match="redirects are not followed"):
        items.stat(files.url("/moved.bin"))
    assert [p for _, p, _ in files.requests] == ["/moved.bin"]


def test_a_missing_length_is_an_unknown_size(files: FileServer, items: HttpItemSource) -> None:
    url = files.put("/stream.bin", b"s" * 100_000, length=False)
    assert items.stat(url).size == -1
    assert _read(items, url) == b"s" * 100_000


def test_an_encoded_answer_is_refused(files: FileServer, items: HttpItemSource) -> None:
    files.status["/gz.bin"] = (200, {"Content-Encoding": "gzip", "Content-Type": "text/plain"})
    with pytest.raises(PermanentError, match="gzip-encoded"):
        items.stat(files.url("/gz.bin"))


def test_the_outbound_policy_refuses_addresses_it_does_not_list(
    files: FileServer, items: HttpItemSource
) -> None:
    files.put("/f.bin", b"data")
    for url in (f"http://127.0.0.2:{files.port}/f.bin", "http://10.1.2.3/f.bin", "http://169.254.169.254/"):
        with pytest.raises(OutboundRefused, match="allow-list"):
            items.stat(url)
        with pytest.raises(PermanentError):
            _read(items, url)
    assert files.requests == []  # refused before connecting
    assert items.stat(files.url("/f.bin")).size == 4


def test_an_unreachable_server_is_transient(client: httpx.Client) -> None:
    with serve_files() as gone:
        url = gone.url("/f.bin")
    with pytest.raises(TransientError, match="connection failed"):
        HttpItemSource(client).stat(url)


def test_error_messages_leave_out_credentials(files: FileServer, items: HttpItemSource) -> None:
    files.status["/f.bin"] = (500, {})
    with pytest.raises(TransientError) as caught:
        items.stat(files.url("/f.bin?sig=SECRETSIG&x=1"))
    assert "SECRETSIG" not in str(caught.value) and TOKEN not in str(caught.value)


@pytest.mark.parametrize(
    "item",
    [
        "ftp://host/f",
        "/relative/path",
        "http://",
        "http://user:pw@host/f",
        "http://host/a b",
        "http://host:99999/",
    ],
)
def test_names_that_are_not_plain_http_urls_are_refused(items: HttpItemSource, item: str) -> None:
    with pytest.raises(ValidationError) as caught:
        items.check(item)
    assert caught.value.field == "item"
