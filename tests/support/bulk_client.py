"""A small FHIR Bulk Data (IG v2.0.0) client with SMART Backend Services authorization, written
from the two specifications and not from this service: it imports nothing of the app.

    keys        `ClientKey.rsa()` (RS384) / `ClientKey.ec()` (ES384, P-384), public half as a JWK
    discovery   GET [base]/.well-known/smart-configuration -> token_endpoint
    token       POST token_endpoint: grant_type=client_credentials, scope, client_assertion_type
                jwt-bearer, client_assertion = a JWT signed with the client's private key
                (iss = sub = client id, aud = token endpoint, exp <= 5 min, a fresh jti)
    export      kick-off with Accept: application/fhir+json, Prefer: respond-async; poll the
                Content-Location honouring Retry-After; download each manifest file, with the
                bearer token when the manifest says requiresAccessToken

`JwksServer` serves JWK Sets on 127.0.0.1, for clients registered with a jwks_url.
"""

from __future__ import annotations

import io
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
FHIR_JSON = "application/fhir+json"


@dataclass(frozen=True)
class ClientKey:
    """A signing key of a backend service: private key, `kid` and algorithm."""

    private: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    kid: str
    alg: str

    @classmethod
    def rsa(cls, kid: str | None = None) -> ClientKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        return cls(key, kid or f"rsa-{uuid.uuid4().hex[:8]}", "RS384")

    @classmethod
    def ec(cls, kid: str | None = None) -> ClientKey:
        return cls(ec.generate_private_key(ec.SECP384R1()), kid or f"ec-{uuid.uuid4().hex[:8]}", "ES384")

    def public_jwk(self) -> dict[str, Any]:
        public = self.private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return {**jwk, "kid": self.kid, "alg": self.alg, "use": "sig", "key_ops": ["verify"]}

    def jwks(self) -> dict[str, Any]:
        return {"keys": [self.public_jwk()]}


def discover(http: httpx.Client, fhir_base: str) -> dict[str, Any]:
    r = http.get(f"{fhir_base}/.well-known/smart-configuration", headers={"Accept": "application/json"})
    r.raise_for_status()
    return dict(r.json())


class BulkClient:
    """One registered backend service talking to one FHIR server; every response is kept."""

    def __init__(self, fhir_base: str, client_id: str, key: ClientKey, scope: str = "system/*.read") -> None:
        self.fhir_base = fhir_base.rstrip("/")
        self.client_id = client_id
        self.key = key
        self.scope = scope
        self.http = httpx.Client(timeout=30)
        self._token: tuple[str, float] | None = None
        self._token_endpoint: str | None = None

    def close(self) -> None:
        self.http.close()

    # --- SMART Backend Services -------------------------------------------------------------

    @property
    def token_endpoint(self) -> str:
        if self._token_endpoint is None:
            self._token_endpoint = str(discover(self.http, self.fhir_base)["token_endpoint"])
        return self._token_endpoint

    def assertion(
        self,
        *,
        expires_in: float = 300,
        jti: str | None = None,
        aud: str | None = None,
        iss: str | None = None,
        key: ClientKey | None = None,
        kid: str | None = None,
        alg: str | None = None,
    ) -> str:
        """The signed authentication JWT; the keyword arguments let a test break one rule."""
        now = time.time()
        claims = {
            "iss": iss or self.client_id,
            "sub": iss or self.client_id,
            "aud": aud or self.token_endpoint,
            "exp": int(now + expires_in),
            "jti": jti or uuid.uuid4().hex,
        }
        signer = key or self.key
        headers = {"typ": "JWT", "kid": kid or signer.kid}
        return jwt.encode(claims, signer.private, algorithm=alg or signer.alg, headers=headers)

    def request_token(self, assertion: str | None = None, scope: str | None = None) -> httpx.Response:
        form = {
            "grant_type": "client_credentials",
            "scope": scope or self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion or self.assertion(),
        }
        return self.http.post(self.token_endpoint, data=form, headers={"Accept": "application/json"})

    def access_token(self) -> str:
        """A valid token, renewed a little before it expires."""
        if self._token is None or self._token[1] < time.time() + 30:
            r = self.request_token()
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["token_type"].lower() == "bearer"
            self._token = (str(body["access_token"]), time.time() + float(body["expires_in"]))
        return self._token[0]

    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token()}"}

    # --- Bulk Data --------------------------------------------------------------------------

    def kickoff(self, path: str = "$export", params: dict[str, str] | None = None) -> httpx.Response:
        headers = {"Accept": FHIR_JSON, "Prefer": "respond-async", **self.auth()}
        return self.http.get(f"{self.fhir_base}/{path}", params=params, headers=headers)

    def start(self, path: str = "$export", params: dict[str, str] | None = None) -> str:
        r = self.kickoff(path, params)
        assert r.status_code == 202, r.text
        return str(r.headers["Content-Location"])

    def poll(self, status_url: str, timeout: float = 120) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            r = self.http.get(status_url, headers={"Accept": "application/json", **self.auth()})
            if r.status_code != 202:
                return r
            assert time.monotonic() < deadline, f"export still running: {r.headers.get('X-Progress')}"
            time.sleep(min(float(r.headers.get("Retry-After", "1")), 1.0))

    def manifest(self, status_url: str) -> dict[str, Any]:
        r = self.poll(status_url)
        assert r.status_code == 200, r.text
        return dict(r.json())

    def download(self, manifest: dict[str, Any]) -> Iterator[tuple[str, list[bytes]]]:
        """(file name, NDJSON lines) of every output file."""
        headers = {"Accept": "application/fhir+ndjson"}
        for entry in manifest["output"]:
            if manifest.get("requiresAccessToken"):
                headers.update(self.auth())
            r = self.http.get(entry["url"], headers=headers)
            assert r.status_code == 200, r.text
            assert r.headers["Content-Type"].startswith("application/fhir+ndjson")
            yield entry["url"].rpartition("/")[2], io.BytesIO(r.content).readlines()  # lines keep their \n


class JwksServer:
    """JWK Sets over plain http on 127.0.0.1: GET /{name}.json answers `sets[name]`."""

    def __init__(self) -> None:
        self.sets: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server API
                server.requests.append(self.path)
                document = server.sets.get(self.path.strip("/").removesuffix(".json"))
                body = json.dumps(document).encode() if document is not None else b"{}"
                self.send_response(200 if document is not None else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{name}.json"

    def __enter__(self) -> JwksServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
