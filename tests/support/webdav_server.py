"""A real WebDAV server (wsgidav on cheroot) on 127.0.0.1 for HTTP PUT destination tests.

    with WebDavTestServer(tmp_path, basic=("alice", "s3cret")) as srv:
        srv.base_url                                   # http://127.0.0.1:<port>/dav
        srv.fail("/dav/flap/", status=503, retry_after="2", times=2)
        srv.fail("/dav/locked/", status=403, reason="quota exceeded", times=None)
        srv.drop("/dav/big.bin", after_bytes=1_000_000)   # cut the connection mid-upload
        srv.path("flap/a.bin")                         # the file on disk
        srv.requests                                   # (method, path, headers) as received

wsgidav behaves as the reference facts say: PUT answers 201 (new) or 204 (replaced), 409 when the
parent collection is missing (it creates no folders), MKCOL answers 405 on an existing collection,
and an aborted upload leaves a partial file. Optional `basic` auth is wsgidav's own; `bearer` is a
small WSGI middleware in front (wsgidav has none). Faults match a path prefix of the request (the
URL path as received, e.g. `/dav/flap/`), optionally one method, for the first `times` requests
(None: every request). `python -m tests.support.webdav_server --port 8081 --root DIR` serves a
folder beside `make run`.
"""

from __future__ import annotations

import contextlib
import hmac
import socket
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from cheroot import wsgi
from wsgidav.wsgidav_app import WsgiDAVApp

from tests.support.ports import free_port

__all__ = ["DavRequest", "PutFault", "WebDavTestServer", "main"]

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]

_DRAIN_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class DavRequest:
    """One request as the server received it (headers with their WSGI names, e.g. `HTTP_DIGEST`)."""

    method: str
    path: str
    headers: Mapping[str, str]

    def header(self, name: str) -> str | None:
        key = name.upper().replace("-", "_")
        if key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            return self.headers.get(key)
        return self.headers.get(f"HTTP_{key}")


@dataclass
class PutFault:
    """Answer `status` (with `retry_after` and `reason` as the body), or with `drop_after` set,
    cut the connection after that many body bytes were read (the upload is left partial)."""

    path: str
    status: int = 503
    retry_after: str | None = None
    reason: str = ""
    method: str | None = None
    times: int | None = 1
    drop_after: int | None = None
    hits: int = field(default=0)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path.startswith(self.path) and (self.times is None or self.hits < self.times)


class WebDavTestServer:
    """The server; a context manager that starts it on a free loopback port and stops it."""

    def __init__(
        self,
        root: Path | None = None,
        *,
        port: int | None = None,
        mount: str = "/dav",
        basic: tuple[str, str] | None = None,
        bearer: str | None = None,
    ) -> None:
        if basic and bearer:
            raise ValueError("choose basic or bearer auth, not both")
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        if root is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="webdav-")
            root = Path(self._tempdir.name)
        self.root = root
        self.port = port or free_port()
        self.mount = "/" + mount.strip("/")
        self.basic = basic
        self.bearer = bearer
        self.requests: deque[DavRequest] = deque(maxlen=10_000)
        self._faults: list[PutFault] = []
        self._lock = threading.Lock()
        self._server: wsgi.Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.mount}"

    def start(self) -> WebDavTestServer:
        self.root.mkdir(parents=True, exist_ok=True)
        app = _Recorder(self, _Faults(self, self._auth(WsgiDAVApp(self._config()))))
        self._server = wsgi.Server(("127.0.0.1", self.port), app, numthreads=8, server_name="webdav-test")
        self._server.prepare()  # binds now, so the port is taken before start() returns
        self._thread = threading.Thread(target=self._server.serve, name=f"webdav-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    def __enter__(self) -> WebDavTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _config(self) -> dict[str, Any]:
        users: object = {"*": True}  # anonymous access (bearer auth is checked in front)
        if self.basic:
            users = {"*": {self.basic[0]: {"password": self.basic[1]}}}
        return {
            "host": "127.0.0.1",
            "port": self.port,
            "provider_mapping": {self.mount: str(self.root)},
            "simple_dc": {"user_mapping": users},
            "http_authenticator": {
                "domain_controller": None,
                "accept_basic": True,
                "accept_digest": False,
                "default_to_digest": False,
            },
            "verbose": 1,
            "logging": {"enable": False},
            "dir_browser": {"enable": False},
        }

    def _auth(self, app: WsgiApp) -> WsgiApp:
        return _Bearer(self.bearer, app) if self.bearer else app

    # -- faults and observation ------------------------------------------------------------------

    def fail(
        self,
        path: str,
        status: int = 503,
        *,
        times: int | None = 1,
        retry_after: str | None = None,
        reason: str = "",
        method: str | None = None,
    ) -> PutFault:
        """Answer `status` to the next `times` requests whose path starts with `path`."""
        return self._add(
            PutFault(path, status=status, retry_after=retry_after, reason=reason, method=method, times=times)
        )

    def drop(
        self, path: str, *, after_bytes: int, times: int | None = 1, method: str | None = "PUT"
    ) -> PutFault:
        """Cut the connection of the next `times` matching uploads after `after_bytes` body bytes."""
        return self._add(PutFault(path, method=method, times=times, drop_after=after_bytes))

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def _add(self, fault: PutFault) -> PutFault:
        with self._lock:
            self._faults.append(fault)
        return fault

    def _take_fault(self, method: str, path: str) -> PutFault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.hits += 1
                    return fault
        return None

    def _record(self, request: DavRequest) -> None:
        with self._lock:
            self.requests.append(request)

    def requests_to(self, method: str, path_prefix: str = "") -> list[DavRequest]:
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path.startswith(path_prefix)]

    def path(self, relative: str) -> Path:
        """The file on disk behind `<base_url>/<relative>`."""
        return self.root / relative


# -- WSGI middleware ---------------------------------------------------------------------------------


class _Recorder:
    def __init__(self, server: WebDavTestServer, app: WsgiApp) -> None:
        self._server = server
        self._app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        headers = {
            k: str(v)
            for k, v in environ.items()
            if k.startswith("HTTP_") or k in ("CONTENT_TYPE", "CONTENT_LENGTH")
        }
        self._server._record(DavRequest(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""), headers))
        return self._app(environ, start_response)


class _Faults:
    def __init__(self, server: WebDavTestServer, app: WsgiApp) -> None:
        self._server = server
        self._app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        fault = self._server._take_fault(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
        if fault is None:
            return self._app(environ, start_response)
        if fault.drop_after is not None:
            environ["wsgi.input"] = _DroppingInput(environ["wsgi.input"], fault.drop_after)
            return self._app(environ, start_response)
        _drain(environ)  # read the body first, so the client sees the answer, not a broken pipe
        reason = HTTPStatus(fault.status).phrase
        body = (fault.reason or f"{fault.status} {reason} (injected)").encode()
        headers = [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))]
        if fault.retry_after is not None:
            headers.append(("Retry-After", fault.retry_after))
        start_response(f"{fault.status} {reason}", headers)
        return [body]


class _Bearer:
    """Bearer-token auth in front of wsgidav (which is configured anonymous when this is used)."""

    def __init__(self, token: str, app: WsgiApp) -> None:
        self._expected = f"Bearer {token}".encode()
        self._app = app

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        given = environ.pop("HTTP_AUTHORIZATION", "").encode()
        if hmac.compare_digest(given, self._expected):
            return self._app(environ, start_response)
        _drain(environ)
        body = b"401 Unauthorized: bearer token missing or wrong"
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "text/plain"),
                ("Content-Length", str(len(body))),
                ("WWW-Authenticate", 'Bearer realm="webdav-test"'),
            ],
        )
        return [body]


def _drain(environ: Environ) -> None:
    remaining = int(environ.get("CONTENT_LENGTH") or 0)
    stream = environ["wsgi.input"]
    while remaining > 0:
        chunk = stream.read(min(remaining, _DRAIN_CHUNK))
        if not chunk:
            return
        remaining -= len(chunk)


class _DroppingInput:
    """`wsgi.input` that delivers `limit` bytes, then reports the end of the body and shuts the
    connection down for writing: wsgidav writes what it got (a partial file), cheroot discards
    the rest of the body, and the client's connection closes without an answer.

    Shutting down for reading would not do: Linux keeps accepting the bytes, the client blocks
    once the window is full and sees a write timeout, not a dropped connection."""

    def __init__(self, stream: Any, limit: int) -> None:
        self._stream = stream
        self._left = limit
        self._dropped = False

    def read(self, size: int = -1) -> bytes:
        if self._left <= 0:
            self._shutdown()
            return b""
        want = self._left if size is None or size < 0 else min(size, self._left)
        data: bytes = self._stream.read(want)
        self._left -= len(data)
        return data

    def _shutdown(self) -> None:
        if self._dropped:
            return
        self._dropped = True
        # cheroot: wsgi.input is a KnownLengthRFile over a StreamReader (a BufferedReader over
        # socket.SocketIO); no public handle on the connection's socket exists.
        sock: socket.socket = self._stream.rfile.raw._sock
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.support.webdav_server`: a WebDAV destination beside `make run` (127.0.0.1)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Serve a folder over WebDAV (wsgidav) on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--root", type=Path, required=True, help="folder to serve (created if missing)")
    parser.add_argument("--mount", default="/dav", help="URL path of the share (default /dav)")
    parser.add_argument("--basic", metavar="USER:PASSWORD", help="require basic auth")
    parser.add_argument("--bearer", metavar="TOKEN", help="require a bearer token")
    args = parser.parse_args(argv)
    basic: tuple[str, str] | None = None
    if args.basic:
        user, sep, password = args.basic.partition(":")
        if not sep:
            parser.error("--basic must be USER:PASSWORD")
        basic = (user, password)
    server = WebDavTestServer(args.root, port=args.port, mount=args.mount, basic=basic, bearer=args.bearer)
    server.start()
    auth = "basic auth" if basic else "bearer auth" if args.bearer else "no auth"
    print(
        f"WebDAV test server on {server.base_url} serving {args.root} ({auth}); Ctrl-C stops it", flush=True
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
