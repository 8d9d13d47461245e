"""HttpPutDestination against a real wsgidav server on loopback (`tests.support.webdav_server`):
streaming with flat memory, auth, missing parents, injected 503/403 faults, an upload cut off
mid-body and retried, and the checksum header as the server received it.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from shared.destinations.http_put import HttpPutDestination, PutDestinationSpec
from shared.errors import PermanentError, RetryAfterError, TransientError
from tests.support.ports import free_port
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = pytest.mark.runtime

MIB = 1024 * 1024
PASSWORD = "correct-horse-battery"
TOKEN = "tok-7f3a9c1e5b2d"


@pytest.fixture(scope="module")
def dav(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDavTestServer]:
    with WebDavTestServer(tmp_path_factory.mktemp("dav")) as server:
        yield server


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0)) as http:
        yield http


def _destination(
    server: WebDavTestServer, client: httpx.Client, secret: str | None = None, **spec: Any
) -> HttpPutDestination:
    fields: dict[str, Any] = {"url_template": "{base}/{path}", "base_url": server.base_url}
    fields.update(spec)
    return HttpPutDestination(PutDestinationSpec(**fields), client, secret)


def _blocks(count: int, seed: str = "x") -> Iterator[bytes]:
    """`count` distinct 1 MiB blocks, made on the fly (never all in memory)."""
    for i in range(count):
        yield hashlib.sha256(f"{seed}{i}".encode()).digest() * (MIB // 32)


def _sha256_of_blocks(count: int, seed: str = "x") -> str:
    digest = hashlib.sha256()
    for block in _blocks(count, seed):
        digest.update(block)
    return digest.hexdigest()


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            digest.update(chunk)
    return digest.hexdigest()


def test_put_a_small_file_then_replace_it(dav: WebDavTestServer, client: httpx.Client) -> None:
    destination = _destination(dav, client)
    destination.check_connection()
    url = destination.spec.url_for({"path": "small.ndjson"})
    first = destination.put(url, [b'{"resourceType":"Patient"}\n'] * 3, 81, "application/fhir+ndjson")
    assert (first.status, first.bytes, first.verified) == (201, 81, True)
    assert dav.path("small.ndjson").read_bytes() == b'{"resourceType":"Patient"}\n' * 3
    dav.path("big-then-small.bin").write_bytes(b"z" * MIB)
    second = destination.put(
        destination.spec.url_for({"path": "big-then-small.bin"}), b"tiny", 4, "text/plain"
    )
    assert second.status == 204 and dav.path("big-then-small.bin").read_bytes() == b"tiny"  # replaced whole
    destination.delete(url)
    destination.delete(url)  # gone already: fine
    assert not dav.path("small.ndjson").exists()


def test_200_mb_streams_with_flat_memory(dav: WebDavTestServer, client: httpx.Client) -> None:
    count = 200
    destination = _destination(dav, client)
    url = destination.spec.url_for({"path": "large.bin"})
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = baseline
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.wait(0.01):
            peak = max(peak, process.memory_info().rss)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        result = destination.put(url, _blocks(count), count * MIB, "application/octet-stream")
    finally:
        done.set()
        sampler.join()
    growth = peak - baseline
    print(f"\n200 MiB PUT: RSS {baseline / MIB:.1f} MiB before, peak growth {growth / MIB:.1f} MiB")
    assert result.verified and result.bytes == count * MIB
    assert growth < 40 * MIB, f"RSS grew by {growth / MIB:.1f} MiB while streaming {count} MiB"
    assert dav.path("large.bin").stat().st_size == count * MIB
    assert _sha256_of_file(dav.path("large.bin")) == _sha256_of_blocks(count)
    dav.path("large.bin").unlink()


def test_basic_auth(tmp_path: Path, client: httpx.Client, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with WebDavTestServer(tmp_path, basic=("alice", PASSWORD)) as server:
        good = _destination(server, client, f"alice:{PASSWORD}", auth="basic", secret_name="s")
        good.check_connection()
        assert good.put(f"{server.base_url}/a.txt", b"hello", 5, "text/plain").verified
        bad = _destination(server, client, "alice:wrong-password-x", auth="basic", secret_name="s")
        for call in (
            bad.check_connection,
            lambda: bad.put(f"{server.base_url}/b.txt", b"x", 1, "text/plain"),
        ):
            with pytest.raises(PermanentError, match="credentials refused") as caught:
                call()
            assert "wrong-password-x" not in str(caught.value) and "HTTP 401" in str(caught.value)
        assert not (tmp_path / "b.txt").exists()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert logged and PASSWORD not in logged and "wrong-password-x" not in logged


def test_bearer_auth(tmp_path: Path, client: httpx.Client) -> None:
    with WebDavTestServer(tmp_path, bearer=TOKEN) as server:
        good = _destination(server, client, TOKEN, auth="bearer", secret_name="s")
        good.check_connection()
        assert good.put(f"{server.base_url}/a.txt", b"hello", 5, "text/plain").status == 201
        assert all(TOKEN not in r.path for r in server.requests)
        bad = _destination(server, client, "not-the-token", auth="bearer", secret_name="s")
        with pytest.raises(PermanentError, match="credentials refused") as caught:
            bad.put(f"{server.base_url}/b.txt", b"x", 1, "text/plain")
        assert "not-the-token" not in str(caught.value)
        with pytest.raises(PermanentError, match="credentials refused"):
            bad.check_connection()


def test_missing_parents(dav: WebDavTestServer, client: httpx.Client) -> None:
    url = f"{dav.base_url}/projects/cohort-a/sessions/s%201/Patient-1.ndjson"
    with pytest.raises(PermanentError, match="HTTP 409 Conflict.*PUT parent must be a collection") as caught:
        _destination(dav, client).put(url, b"x", 1, "text/plain")
    print(f"\nwithout create_parents: {caught.value}")
    result = _destination(dav, client, create_parents=True).put(url, b"data", 4, "text/plain")
    assert result.status == 201
    assert dav.path("projects/cohort-a/sessions/s 1/Patient-1.ndjson").read_bytes() == b"data"
    # Nothing existed: 409 up from `s 1/` to `projects/` (201), then down again: 2 * 4 - 1.
    assert len(dav.requests_to("MKCOL", "/dav/projects/")) == 7


def test_503_with_retry_after_then_success(dav: WebDavTestServer, client: httpx.Client) -> None:
    destination = _destination(dav, client)
    dav.fail("/dav/flap.txt", 503, retry_after="2", times=1, method="PUT")
    with pytest.raises(RetryAfterError) as caught:
        destination.put(f"{dav.base_url}/flap.txt", _blocks(2), 2 * MIB, "application/octet-stream")
    assert caught.value.retry_after_s == 2.0 and "HTTP 503" in str(caught.value)
    dav.fail("/dav/flap.txt", 503, times=1, method="PUT")
    with pytest.raises(TransientError) as plain:
        destination.put(f"{dav.base_url}/flap.txt", _blocks(2), 2 * MIB, "application/octet-stream")
    assert not isinstance(plain.value, RetryAfterError)
    assert destination.put(
        f"{dav.base_url}/flap.txt", _blocks(2), 2 * MIB, "application/octet-stream"
    ).verified
    assert _sha256_of_file(dav.path("flap.txt")) == _sha256_of_blocks(2)


def test_403_is_permanent_with_the_servers_reason(dav: WebDavTestServer, client: httpx.Client) -> None:
    dav.fail("/dav/locked/", 403, reason="quota exceeded for project cohort-a", times=None)
    try:
        with pytest.raises(PermanentError, match="HTTP 403 Forbidden: quota exceeded for project cohort-a"):
            _destination(dav, client).put(f"{dav.base_url}/locked/f.txt", b"x", 1, "text/plain")
    finally:
        dav.clear_faults()


def test_an_aborted_upload_is_replaced_by_the_retry(dav: WebDavTestServer, client: httpx.Client) -> None:
    count, cut = 8, 3 * MIB
    destination = _destination(dav, client)
    url = f"{dav.base_url}/aborted.bin"
    dav.drop("/dav/aborted.bin", after_bytes=cut)
    with pytest.raises(TransientError, match="connection failed") as caught:
        destination.put(url, _blocks(count), count * MIB, "application/octet-stream")
    print(f"\ncut off: {caught.value}")
    # wsgidav keeps what it received (reference facts): a partial file is on disk.
    wait_until(lambda: dav.path("aborted.bin").stat().st_size == cut, timeout=10, message="partial file")
    result = destination.put(url, _blocks(count), count * MIB, "application/octet-stream")
    assert result.status == 204 and result.verified
    assert _sha256_of_file(dav.path("aborted.bin")) == _sha256_of_blocks(count)


def test_a_source_cut_mid_body_leaves_a_partial_file_the_retry_replaces(
    dav: WebDavTestServer, client: httpx.Client
) -> None:
    count = 8
    destination = _destination(dav, client)
    url = f"{dav.base_url}/cut-source.bin"
    with pytest.raises(TransientError, match=f"ended after {3 * MIB} of {count * MIB} bytes"):
        destination.put(url, _blocks(3), count * MIB, "application/octet-stream")  # the source stops early
    # The client aborted the request (closing the connection after the bytes it had sent);
    # wsgidav wrote what had arrived and stopped at the end of the stream: a partial file.
    wait_until(lambda: dav.path("cut-source.bin").stat().st_size == 3 * MIB, timeout=10, message="partial")
    assert destination.put(url, _blocks(count), count * MIB, "application/octet-stream").verified
    assert _sha256_of_file(dav.path("cut-source.bin")) == _sha256_of_blocks(count)


def test_checksum_header_is_sent(dav: WebDavTestServer, client: httpx.Client, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"".join(_blocks(3, seed="c")))
    md5 = _destination(dav, client, checksum_header="Content-MD5")
    with source.open("rb") as body:
        md5.put(f"{dav.base_url}/md5.bin", body, 3 * MIB, "application/octet-stream")
    sent = dav.requests_to("PUT", "/dav/md5.bin")[-1]
    assert sent.header("Content-MD5") == base64.b64encode(hashlib.md5(source.read_bytes()).digest()).decode()
    assert sent.header("Content-Length") == str(3 * MIB) and sent.header("Transfer-Encoding") is None
    sha = hashlib.sha256(source.read_bytes())
    digest = _destination(dav, client, checksum_header="Repr-Digest")
    digest.put(
        f"{dav.base_url}/sha.bin",
        _blocks(3, seed="c"),
        3 * MIB,
        "application/octet-stream",
        checksum=sha.hexdigest(),
    )
    sent = dav.requests_to("PUT", "/dav/sha.bin")[-1]
    assert sent.header("Repr-Digest") == f"sha-256=:{base64.b64encode(sha.digest()).decode()}:"


def test_unreachable_server_is_transient(client: httpx.Client) -> None:
    spec = PutDestinationSpec(url_template="{base}/{name}", base_url=f"http://127.0.0.1:{free_port()}/dav")
    with pytest.raises(TransientError, match="connection failed"):
        HttpPutDestination(spec, client, None).check_connection()


def test_the_command_line_server(tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = [
        sys.executable,
        "-m",
        "tests.support.webdav_server",
        "--port",
        str(port),
        "--root",
        str(tmp_path),
    ]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        try:
            assert process.stdout is not None
            line = process.stdout.readline()
            assert f"http://127.0.0.1:{port}/dav" in line
            assert httpx.put(f"http://127.0.0.1:{port}/dav/cli.txt", content=b"ok").status_code == 201
            assert (tmp_path / "cli.txt").read_bytes() == b"ok"
        finally:
            process.terminate()
            process.wait(timeout=10)
