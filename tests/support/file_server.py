"""A small HTTP file server on 127.0.0.1 for the URL item source: files in memory, faults on call.

It serves what `shared.items.http` relies on (reference facts, RFC 9110): `ETag` and
`Last-Modified`, `Content-Length` (left out for a file added with `length=False`: the body then
ends when the connection closes), single `Range: bytes=N-` requests answered 206 with
`Content-Range`, `If-Range` (a changed ETag answers 200 with the whole file), 416 past the end,
HEAD. Tests set `status` for a path (404, 503, ...), `ranges = False` to ignore Range, `head = False`
to answer HEAD with 405, and read `requests` (method, path, headers) afterwards.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

__all__ = ["FileServer", "serve_files"]

_WRITE = 64 * 1024


@dataclass
class _File:
    data: bytes
    content_type: str
    length: bool
    etag: str


@dataclass
class FileServer:
    port: int = 0
    files: dict[str, _File] = field(default_factory=dict)
    status: dict[str, tuple[int, dict[str, str]]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    ranges: bool = True
    head: bool = True

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def put(
        self, path: str, data: bytes, content_type: str = "application/octet-stream", *, length: bool = True
    ) -> str:
        """Serve `data` at `path` (a new ETag each time it changes); returns the URL."""
        etag = f'"{hashlib.sha256(data).hexdigest()[:16]}"'
        self.files[path] = _File(data, content_type, length, etag)
        return self.url(path)


def _handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"  # one request per connection; bodies without length end at close

        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            self._answer(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            if not server.head:
                server.requests.append((self.command, self.path, dict(self.headers.items())))
                self.send_response(405)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self._answer(body=False)

        def _answer(self, body: bool) -> None:
            path = urlsplit(self.path).path  # the query is the client's business (a SAS, say)
            server.requests.append((self.command, self.path, dict(self.headers.items())))
            if path in server.status:
                code, headers = server.status[path]
                self.send_response(code)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            file = server.files.get(path)
            if file is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            start = self._range_start(file)
            if start is not None and start >= len(file.data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(file.data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            data = file.data[start or 0 :]
            self.send_response(206 if start is not None else 200)
            self.send_header("Content-Type", file.content_type)
            self.send_header("ETag", file.etag)
            if start is not None:
                self.send_header("Content-Range", f"bytes {start}-{len(file.data) - 1}/{len(file.data)}")
            if file.length:
                self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if body:
                with memoryview(data) as view:
                    for offset in range(0, len(data), _WRITE):
                        self.wfile.write(view[offset : offset + _WRITE])

        def _range_start(self, file: _File) -> int | None:
            header = self.headers.get("Range")
            if not server.ranges or not header or not header.startswith("bytes=") or not header.endswith("-"):
                return None
            if_range = self.headers.get("If-Range")
            if if_range is not None and if_range != file.etag:
                return None  # changed: the whole (new) file
            return int(header[len("bytes=") : -1])

        def log_message(self, *args: object) -> None:
            pass

    return Handler


@contextmanager
def serve_files() -> Iterator[FileServer]:
    """A FileServer listening on a free port of 127.0.0.1 until the block ends."""
    state = FileServer()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    httpd.daemon_threads = True
    state.port = int(httpd.server_address[1])
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)
