"""A local HTTPS server speaking the Key Vault secrets REST shapes, for the real `SecretClient`.

No Key Vault emulator is installable, so tests run azure-keyvault-secrets against this. It does
what the client relies on (reference facts): HTTPS only (the client refuses bearer tokens over
http), a 401 challenge naming the tenant and resource before any token is sent, secret bundles
`{"value", "id": "{vault}/secrets/{name}/{version}", "attributes"}`, soft delete (a deleted name
cannot be set until purged: 409), purge, and `{"error": {"code": "SecretNotFound"}}` errors.

Tests inspect `secrets`, `deleted` and `requests`, and inject faults with `fail_next` and
`purge_allowed`. Listens on 127.0.0.1 only, with a certificate from a throwaway trustme CA.
"""

from __future__ import annotations

import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import trustme
from azure.core.credentials import AccessToken

TENANT = "00000000-0000-0000-0000-000000000000"
CHALLENGE = (
    f'Bearer authorization="https://login.microsoftonline.com/{TENANT}", resource="https://vault.azure.net"'
)
_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
_SECRET_PATH = re.compile(r"^/secrets/([^/]+)(?:/([^/]*))?$")
_DELETED_PATH = re.compile(r"^/deletedsecrets/([^/]+)$")


class StaticTokenCredential:
    """A `TokenCredential` that always returns the same token (the server checks it)."""

    def __init__(self, token: str) -> None:
        self.token = token

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        return AccessToken(self.token, int(time.time()) + 3600)


@dataclass
class _Version:
    version: str
    value: str
    content_type: str | None
    tags: dict[str, str]
    created: int


@dataclass
class _State:
    live: dict[str, list[_Version]] = field(default_factory=dict)
    deleted: dict[str, tuple[list[_Version], int]] = field(default_factory=dict)
    requests: list[tuple[str, str, bool]] = field(default_factory=list)  # method, path, authorized
    failures: list[tuple[int, int | None]] = field(default_factory=list)  # status, Retry-After
    purge_allowed: bool = True
    soft_delete: bool = True
    # A real vault takes a moment to list a deleted secret; until then GET /deletedsecrets is 404
    # and purge is 409. `deletion_polls` is how many GETs of a deleted secret answer 404.
    deletion_polls: int = 0
    pending_polls: dict[str, int] = field(default_factory=dict)


class KeyVaultServer:
    """Start with `start()` (or as a context manager); `url` is the vault URL for SecretClient."""

    def __init__(self, folder: Path, token: str = "test-token") -> None:
        self.token = token
        self._state = _State()
        self._lock = threading.Lock()
        ca = trustme.CA()
        self.ca_path = folder / "keyvault-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_path))
        self._server_cert = ca.issue_cert("127.0.0.1", "localhost")
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- life cycle --------------------------------------------------------------------------

    def start(self) -> KeyVaultServer:
        handler = type("Handler", (_Handler,), {"vault": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._server_cert.configure_cert(context)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="keyvault", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> KeyVaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"https://127.0.0.1:{self._httpd.server_address[1]}"

    def client_kwargs(self) -> dict[str, Any]:
        """What SecretClient needs to trust this server: its CA, and no resource-domain check."""
        return {"verify_challenge_resource": False, "connection_verify": str(self.ca_path)}

    def credential(self) -> StaticTokenCredential:
        return StaticTokenCredential(self.token)

    # --- inspection and fault injection ---------------------------------------------------------

    @property
    def secrets(self) -> dict[str, str]:
        """Name -> latest value of every live (not deleted) secret."""
        with self._lock:
            return {name: versions[-1].value for name, versions in self._state.live.items()}

    def versions(self, name: str) -> list[str]:
        with self._lock:
            return [v.version for v in self._state.live.get(name, [])]

    @property
    def deleted(self) -> set[str]:
        """Names deleted but not purged."""
        with self._lock:
            return set(self._state.deleted)

    @property
    def requests(self) -> list[tuple[str, str, bool]]:
        with self._lock:
            return list(self._state.requests)

    def fail_next(self, status: int, count: int = 1, retry_after_s: int | None = None) -> None:
        """Answer the next `count` authorized requests with `status` (e.g. 503), optionally with
        a `Retry-After` header."""
        with self._lock:
            self._state.failures.extend([(status, retry_after_s)] * count)

    def configure(
        self,
        *,
        purge_allowed: bool | None = None,
        soft_delete: bool | None = None,
        deletion_polls: int | None = None,
    ) -> None:
        with self._lock:
            if purge_allowed is not None:
                self._state.purge_allowed = purge_allowed
            if soft_delete is not None:
                self._state.soft_delete = soft_delete
            if deletion_polls is not None:
                self._state.deletion_polls = deletion_polls

    def reset(self) -> None:
        with self._lock:
            self._state = _State()

    # --- the REST shapes ---------------------------------------------------------------------

    def handle(
        self, method: str, path: str, authorized: bool, body: dict[str, Any]
    ) -> tuple[int, Any, dict[str, str]]:
        """(status, JSON payload or None, extra headers) for one request."""
        with self._lock:
            self._state.requests.append((method, path, authorized))
            if not authorized:
                return 401, None, {"WWW-Authenticate": CHALLENGE}
            if self._state.failures:
                status, retry_after = self._state.failures.pop(0)
                headers = {} if retry_after is None else {"Retry-After": str(retry_after)}
                return status, _error("ServiceUnavailable", f"injected {status}"), headers
            status, payload = self._route(method, path, body)
            return status, payload, {}

    def _route(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        match = _SECRET_PATH.match(path)
        if match:
            name, version = match.group(1), match.group(2) or ""
            if not _NAME.match(name):
                return 400, _error("BadParameter", "The request URI contains an invalid name")
            if method == "PUT" and version == "":
                return self._set(name, body)
            if method == "GET":
                return self._get(name, version)
            if method == "DELETE" and version == "":
                return self._delete(name)
        match = _DELETED_PATH.match(path)
        if match:
            name = match.group(1)
            if method == "GET":
                return self._get_deleted(name)
            if method == "DELETE":
                return self._purge(name)
        return 404, _error("NotFound", f"{method} {path} is not supported by this test server")

    def _set(self, name: str, body: dict[str, Any]) -> tuple[int, Any]:
        if name in self._state.deleted:
            return 409, _error("Conflict", f"Secret {name} is currently in a deleted but recoverable state")
        if not isinstance(body.get("value"), str):
            return 400, _error("BadParameter", "value is required")
        version = _Version(
            uuid.uuid4().hex, body["value"], body.get("contentType"), body.get("tags") or {}, _now()
        )
        self._state.live.setdefault(name, []).append(version)
        return 200, self._bundle(name, version)

    def _get(self, name: str, version: str) -> tuple[int, Any]:
        for candidate in reversed(self._state.live.get(name, [])):
            if version in ("", candidate.version):
                return 200, self._bundle(name, candidate)
        return 404, _error(
            "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
        )

    def _delete(self, name: str) -> tuple[int, Any]:
        versions = self._state.live.pop(name, None)
        if versions is None:
            return 404, _error(
                "SecretNotFound", f"A secret with (name/id) {name} was not found in this key vault."
            )
        if not self._state.soft_delete:
            return 200, self._bundle(name, versions[-1])  # no recoveryId: the client does not poll
        self._state.deleted[name] = (versions, _now())
        self._state.pending_polls[name] = self._state.deletion_polls
        return 200, self._deleted_bundle(name)

    def _get_deleted(self, name: str) -> tuple[int, Any]:
        if name not in self._state.deleted:
            return 404, _error("SecretNotFound", f"Deleted Secret not found: {name}")
        if self._state.pending_polls.get(name, 0) > 0:
            self._state.pending_polls[name] -= 1
            return 404, _error("SecretNotFound", f"Deleted Secret not found: {name}")
        return 200, self._deleted_bundle(name)

    def _purge(self, name: str) -> tuple[int, Any]:
        if name not in self._state.deleted:
            return 404, _error("SecretNotFound", f"Deleted Secret not found: {name}")
        if self._state.pending_polls.get(name, 0) > 0:
            return 409, _error("Conflict", f"Secret {name} is currently being deleted.")
        if not self._state.purge_allowed:
            return 403, _error("Forbidden", "Operation purge is not allowed on this vault")
        del self._state.deleted[name]
        return 204, None

    def _bundle(self, name: str, version: _Version) -> dict[str, Any]:
        return {
            "value": version.value,
            "id": f"{self.url}/secrets/{name}/{version.version}",
            "contentType": version.content_type,
            "tags": version.tags,
            "attributes": {
                "enabled": True,
                "created": version.created,
                "updated": version.created,
                "recoveryLevel": "Recoverable+Purgeable" if self._state.soft_delete else "Purgeable",
            },
        }

    def _deleted_bundle(self, name: str) -> dict[str, Any]:
        versions, deleted_at = self._state.deleted[name]
        bundle = self._bundle(name, versions[-1])
        bundle.pop("value")  # a deleted bundle does not disclose the value
        bundle.update(
            recoveryId=f"{self.url}/deletedsecrets/{name}",
            deletedDate=deleted_at,
            scheduledPurgeDate=deleted_at + 90 * 86400,
        )
        return bundle


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's connection pool expects
    vault: KeyVaultServer

    def do_GET(self) -> None:
        self._serve("GET")

    def do_PUT(self) -> None:
        self._serve("PUT")

    def do_DELETE(self) -> None:
        self._serve("DELETE")

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else {}
        except json.JSONDecodeError:
            body = {}
        authorized = self.headers.get("Authorization") == f"Bearer {self.vault.token}"
        status, payload, headers = self.vault.handle(method, urlsplit(self.path).path, authorized, body)
        data = b"" if payload is None else json.dumps(payload).encode()
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if data:
            self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: request lines are in `KeyVaultServer.requests`."""


def _error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def _now() -> int:
    return int(time.time())
