"""HTTP PUT destination: one file per request to a partner's upload API or a WebDAV server.

Usage (the caller resolves the secret through the SecretStore and owns the `httpx.Client`):

    spec = PutDestinationSpec.from_dict(record["destination"])     # ValidationError names the field
    destination = HttpPutDestination(spec, http_client, secret_value)
    destination.check_connection()                                 # PermanentError: credentials refused
    url = spec.url_for({"project": "cohort-a", "session": "s1", "name": "Patient-1.ndjson"})
    with open(path, "rb") as body:
        result = destination.put(url, body, size, "application/fhir+ndjson")   # PutResult
    destination.delete(url)                                        # 404 is fine

Bodies stream with an exact `Content-Length` (files in 1 MiB reads, iterables as they yield;
never chunked, never read whole). PUT replaces the resource, so a retry after any failure leaves
exactly the source bytes; `verify` HEADs the file afterwards and raises TransientError when the
server holds another length (a short write). wsgidav needs `create_parents` (it answers 409 for a
missing folder): parents are MKCOLed before the PUT, so a big body is not sent twice, and a 409
anyway makes them again and resends once (a seekable body). nginx with `create_full_put_path`
needs no MKCOL. Errors follow `shared.sources` (`classify_status`):
408/429/5xx and network failures are transient, other 4xx permanent with the server's reason.
Credentials go only into headers; URLs, messages and `repr` never carry them. No redirect is
followed (it could carry the credentials elsewhere). Not thread-safe: one instance per upload task.
"""

from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, BinaryIO, Final, Literal, cast, get_args
from urllib.parse import urlsplit

import httpx

from shared._strict import ObjectReader, check_http_url
from shared.destinations.url_template import TEMPLATE_FIELD, check_template, expand, is_under, placeholders
from shared.errors import ExportError, PermanentError, RetryAfterError, TransientError, ValidationError
from shared.secrets.base import MAX_SECRET_NAME_LENGTH, check_secret_name
from shared.sources import classify_status, classify_transport_error, redact_url

__all__ = [
    "AuthKind", "HttpPutDestination", "PutDestinationSpec", "PutResult",
    "check_template", "checksum_algorithm", "expand", "format_checksum", "placeholders"
]  # fmt: skip

log = logging.getLogger(__name__)

AuthKind = Literal["none", "basic", "bearer", "headers"]
AUTH_KINDS: Final[tuple[str, ...]] = get_args(AuthKind)
# Canonical spellings by lower-case name. Content-MD5 (RFC 1864) is what most upload APIs check;
# Digest is RFC 3230's, Repr-Digest / Content-Digest RFC 9530's (same value for an unencoded body).
CHECKSUM_HEADERS: Final = {h.lower(): h for h in ("Content-MD5", "Digest", "Repr-Digest", "Content-Digest")}
CHUNK_BYTES: Final = 1024 * 1024
_HEADER_NAME: Final = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$")
# Headers the request itself sets; a "headers" secret must not change how the body is framed.
_RESERVED_HEADERS: Final = frozenset(
    {"host", "content-length", "content-type", "transfer-encoding", "connection", "expect", "te", "upgrade"}
)
_ERROR_BODY_BYTES: Final = 4096  # enough for a server's reason; a huge error page is not read
_EXCERPT_CHARS: Final = 200
_MIN_SCRUB_CHARS: Final = 4  # scrubbing "a" out of every message would only garble it


def _utcnow() -> datetime:
    return datetime.now(UTC)


# --- the spec ------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class PutDestinationSpec:
    """Where to PUT: a URL template under `base_url`, how to authenticate, and upload options.

    `secret_name` names the secret whose value the caller resolves: `"user:password"` (basic),
    the token (bearer), or a JSON object of header names to values (headers).
    """

    kind: Literal["http_put"] = "http_put"
    url_template: str  # e.g. "{base}/projects/{project}/sessions/{session}/{name}"
    base_url: str
    auth: AuthKind = "none"
    secret_name: str | None = None
    create_parents: bool = False  # MKCOL each missing parent collection (WebDAV servers need it)
    checksum_header: str | None = None  # one of CHECKSUM_HEADERS' values
    verify: bool = True  # HEAD after the PUT and compare Content-Length

    def placeholders(self) -> tuple[str, ...]:
        return placeholders(self.url_template)

    def url_for(self, values: Mapping[str, str]) -> str:
        """The file URL for job labels and part values (`name`, `path`, ...); `base` is reserved."""
        if "base" in values:
            raise ValidationError(TEMPLATE_FIELD, "{base} is the base URL; no value may be called base")
        return expand(self.url_template, {**values, "base": self.base_url})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], path: str = "destination") -> PutDestinationSpec:
        """The record shape (a secret NAME, never a value); unknown fields are refused."""
        reader = ObjectReader(data, path)
        if reader.text("kind") != "http_put":
            raise ValidationError(reader.field("kind"), 'must be "http_put"')
        base_url = check_http_url(reader.field("base_url"), reader.text("base_url"))
        base = urlsplit(base_url)
        if "?" in base_url or "#" in base_url:
            raise ValidationError(reader.field("base_url"), "must not have a query or fragment")
        if any(s in (".", "..") for s in base.path.split("/")):
            raise ValidationError(reader.field("base_url"), "must not contain . or .. segments")
        template = check_template(reader.text("url_template"), reader.field("url_template"))
        auth = reader.text("auth", "none", max_len=16)
        if auth not in AUTH_KINDS:
            raise ValidationError(reader.field("auth"), f"must be one of {', '.join(AUTH_KINDS)}")
        secret_name = reader.text("secret_name", None, max_len=MAX_SECRET_NAME_LENGTH)
        if secret_name is not None:
            check_secret_name(reader.field("secret_name"), secret_name)
        if auth == "none" and secret_name is not None:
            raise ValidationError(reader.field("secret_name"), "must be absent when auth is none")
        if auth != "none" and secret_name is None:
            raise ValidationError(reader.field("secret_name"), f"is required when auth is {auth}")
        header = reader.text("checksum_header", None, max_len=64)
        if header is not None:
            if header.lower() not in CHECKSUM_HEADERS:
                known = ", ".join(CHECKSUM_HEADERS.values())
                raise ValidationError(reader.field("checksum_header"), f"must be one of {known}")
            header = CHECKSUM_HEADERS[header.lower()]
        spec = cls(
            url_template=template,
            base_url=base_url,
            auth=cast(AuthKind, auth),
            secret_name=secret_name,
            create_parents=reader.flag("create_parents", False),
            checksum_header=header,
            verify=reader.flag("verify", True),
        )
        reader.finish()
        return spec


# --- checksums (pure) ----------------------------------------------------------------------------


def checksum_algorithm(header: str) -> Literal["md5", "sha256"]:
    """The digest a checksum header carries: MD5 for Content-MD5, SHA-256 for the others."""
    return "md5" if header.lower() == "content-md5" else "sha256"


def format_checksum(header: str, digest: bytes) -> str:
    """The header value for a raw digest, in the header's own syntax."""
    b64 = base64.b64encode(digest).decode("ascii")
    name = header.lower()
    if name == "content-md5":
        return b64
    if name == "digest":
        return f"sha-256={b64}"
    return f"sha-256=:{b64}:"  # RFC 9530: a structured-field byte sequence


# --- the destination -----------------------------------------------------------------------------

Body = bytes | BinaryIO | Iterable[bytes]


@dataclass(frozen=True)
class PutResult:
    status: int  # the PUT's status (201 created, 204 replaced, 200...)
    bytes: int  # body bytes sent
    verified: bool  # a HEAD answered the same Content-Length


class HttpPutDestination:
    """Uploads, deletes and checks files under `spec.base_url` through the caller's client."""

    def __init__(
        self,
        spec: PutDestinationSpec,
        http_client: httpx.Client,
        secret_value: str | None,
        *,
        now: Callable[[], datetime] = _utcnow,
    ) -> None:
        if spec.auth == "none" and secret_value is not None:
            raise ValueError("auth is none: no destination secret is expected")
        if spec.auth != "none" and secret_value is None:
            raise ValueError("the destination secret must be resolved before making the destination")
        check_http_url("destination.base_url", spec.base_url)  # a spec built in code skips from_dict
        self._spec = spec
        self._client = http_client
        self._headers, self._sensitive = _auth_headers(spec.auth, secret_value, spec.checksum_header)
        self._now = now
        self._collections: set[str] = set()  # collection URLs known to exist

    def __repr__(self) -> str:
        return f"HttpPutDestination(base_url={redact_url(self._spec.base_url)!r}, auth={self._spec.auth!r})"

    @property
    def spec(self) -> PutDestinationSpec:
        return self._spec

    def check_connection(self) -> None:
        """OPTIONS (HEAD when OPTIONS is not implemented) on the base URL: 2xx, 3xx, 404 and 405
        mean reachable; 401/403 are a PermanentError "credentials refused"."""
        url = self._spec.base_url
        response, body = self._send("OPTIONS", url)
        if response.status_code == 501:
            response, body = self._send("HEAD", url)
        if response.is_success or 300 <= response.status_code < 400 or response.status_code in (404, 405):
            return
        raise self._error(response, body, f"{response.request.method} {redact_url(url)}", refused=(401, 403))

    def put(
        self,
        url: str,
        body: Body,
        length: int,
        content_type: str,
        *,
        checksum: str | None = None,
    ) -> PutResult:
        """PUT exactly `length` bytes of `body` (a binary file, read from its position, or an
        iterable of chunks) to `url`. `checksum` is the body's hex digest (MD5 for Content-MD5,
        else SHA-256); without it a checksum header needs a seekable file, hashed first."""
        self._check_url(url)
        if length < 0:
            raise ValueError("length must not be negative")
        what, source = f"PUT {redact_url(url)}", _file(body)
        start = _position(source)
        headers = {"Content-Length": str(length), "Content-Type": content_type}
        if self._spec.checksum_header:
            headers[self._spec.checksum_header] = self._checksum(source, start, length, checksum, what)
        if self._spec.create_parents:
            self._ensure_parents(url)
        response, reason = self._send("PUT", url, headers=headers, content=_exact(source, length, what))
        if response.status_code == 409 and self._spec.create_parents:
            # The parents existed before the PUT, so one was removed since: make them again, and
            # resend when the body can be read again (else the caller's retry will).
            self._collections.clear()
            self._ensure_parents(url)
            if start is None:
                raise TransientError(f"{what}: a parent collection had gone; it was made again, retry")
            cast(BinaryIO, source).seek(start)
            response, reason = self._send("PUT", url, headers=headers, content=_exact(source, length, what))
        if not response.is_success:
            hint = "" if self._spec.create_parents else " (parent collection missing? see create_parents)"
            raise self._error(response, reason, what, hint=hint if response.status_code == 409 else "")
        verified = self._verify(url, length, what) if self._spec.verify else False
        return PutResult(status=response.status_code, bytes=length, verified=verified)

    def delete(self, url: str) -> None:
        """DELETE `url`; a file that is not there (404) is not an error."""
        self._check_url(url)
        response, body = self._send("DELETE", url)
        if not (response.is_success or response.status_code == 404):
            raise self._error(response, body, f"DELETE {redact_url(url)}")

    # -- steps --------------------------------------------------------------------------------

    def _verify(self, url: str, length: int, what: str) -> bool:
        """True when a HEAD's Content-Length equals `length`; False when the server cannot say."""
        response, body = self._send("HEAD", url)
        if response.status_code in (405, 501):
            return False
        if response.status_code == 404:
            raise TransientError(f"{what}: the file is not there after the upload (HEAD answered 404)")
        if not response.is_success:
            raise self._error(response, body, f"HEAD {redact_url(url)}")
        stored = response.headers.get("Content-Length")
        if stored is None or not stored.isdigit():
            return False
        if int(stored) != length:
            raise TransientError(f"{what}: the server holds {stored} bytes after the upload, not {length}")
        return True

    def _ensure_parents(self, url: str) -> None:
        """MKCOL the missing collections between the base URL and `url`, deepest first: 201 or
        405 (exists) ends the walk up, 409 (its parent is missing) goes one level higher."""
        base = self._spec.base_url.rstrip("/")
        segments = urlsplit(url).path[len(urlsplit(base).path.rstrip("/")) :].strip("/").split("/")[:-1]
        chain = [f"{base}/{'/'.join(segments[: i + 1])}/" for i in range(len(segments))]
        missing: list[str] = []
        for level in range(len(chain) - 1, -1, -1):
            if chain[level] in self._collections or self._mkcol(chain[level], top=level == 0):
                self._collections.update(chain[: level + 1])
                break
            missing.append(chain[level])
        for collection in reversed(missing):
            if not self._mkcol(collection, top=True):
                raise PermanentError(f"MKCOL {redact_url(collection)}: its parent is still missing")
            self._collections.add(collection)

    def _mkcol(self, collection: str, *, top: bool) -> bool:
        """True when `collection` exists now; False when its parent is missing (409)."""
        response, body = self._send("MKCOL", collection)
        what = f"MKCOL {redact_url(collection)}"
        if response.status_code >= 500:
            # Two uploads into one new folder race to make it; wsgidav answers the loser 500
            # (FileExistsError). Asking once more gets 405, "it exists", when that was the cause.
            response, body = self._send("MKCOL", collection)
        if response.is_success or response.status_code == 405:  # 405: it already exists
            if response.is_success:
                log.info("created collection %s", redact_url(collection))
            return True
        if response.status_code == 409 and not top:
            return False
        hint = " (does the base URL exist?)" if response.status_code == 409 else ""
        raise self._error(response, body, what, hint=hint)

    def _checksum(
        self, body: BinaryIO | Iterable[bytes], start: int | None, length: int, given: str | None, what: str
    ) -> str:
        header = cast(str, self._spec.checksum_header)
        hasher = hashlib.new(checksum_algorithm(header), usedforsecurity=False)
        if given is not None:
            try:
                digest = bytes.fromhex(given)
            except ValueError:
                raise ValueError("checksum must be a hex digest") from None
            if len(digest) != hasher.digest_size:
                raise ValueError(f"checksum must be a {hasher.name} hex digest for {header}")
            return format_checksum(header, digest)
        if start is None:
            raise ValueError(f"{header} is configured: pass checksum= or a seekable binary file")
        total = 0
        for chunk in _chunks(body):
            hasher.update(chunk)
            total += len(chunk)
        cast(BinaryIO, body).seek(start)
        if total != length:
            raise PermanentError(f"{what}: the body has {total} bytes, not the {length} announced")
        return format_checksum(header, hasher.digest())

    # -- HTTP ---------------------------------------------------------------------------------

    def _check_url(self, url: str) -> None:
        if not is_under(self._spec.base_url.rstrip("/"), url):
            raise PermanentError(f"{redact_url(url)} is not under the destination's base URL")

    def _send(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        content: Iterator[bytes] | None = None,
    ) -> tuple[httpx.Response, bytes]:
        """Send one request; return the response (closed) and the start of its body."""
        request = self._client.build_request(
            method, url, headers={**self._headers, **(headers or {})}, content=content
        )
        try:
            response = self._client.send(request, stream=True, follow_redirects=False)
            try:
                body = _read_at_most(response, _ERROR_BODY_BYTES)
            finally:
                response.close()
        except httpx.RequestError as exc:
            error = classify_transport_error(exc, f"{method} {redact_url(url)}")
            raise type(error)(self._scrub(str(error))) from exc
        return response, body

    def _error(
        self,
        response: httpx.Response,
        body: bytes,
        what: str,
        *,
        refused: tuple[int, ...] = (401,),
        hint: str = "",
    ) -> ExportError:
        """The domain error for a failed answer: classified as the sources classify, with the
        server's reason (an OperationOutcome's text, else an excerpt of the body)."""
        status_line = f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
        if response.status_code in refused:
            refusal = (
                "credentials refused" if self._spec.auth != "none" else "the server requires credentials"
            )
            return PermanentError(self._scrub(f"{what}: {refusal} ({status_line})"))
        error = classify_status(response, body, what, now=self._now)
        message = str(error)
        if message == f"{what}: {status_line}":
            excerpt = _excerpt(body, status_line.removeprefix("HTTP "))
            message = f"{message}: {excerpt}" if excerpt else message
        message = self._scrub(message + hint)
        if isinstance(error, RetryAfterError):
            return RetryAfterError(message, error.retry_after_s)
        return TransientError(message) if isinstance(error, TransientError) else PermanentError(message)

    def _scrub(self, message: str) -> str:
        # A server may echo request headers into its error page; none of it may reach a message.
        for secret in self._sensitive:
            message = message.replace(secret, "***")
        return message


# --- helpers -------------------------------------------------------------------------------------


def _auth_headers(
    auth: str, secret: str | None, checksum_header: str | None
) -> tuple[dict[str, str], tuple[str, ...]]:
    """The credential headers and the strings no message may contain. Errors never quote the secret."""
    if auth == "none" or secret is None:
        return {}, ()
    if auth == "basic":
        user, sep, password = secret.partition(":")
        if not sep or not user or any(c in secret for c in "\r\n\0"):
            raise PermanentError("the destination secret for basic auth must be user:password")
        token = base64.b64encode(secret.encode("utf-8")).decode("ascii")
        return {"Authorization": f"Basic {token}"}, _scrubbed(secret, token, password)
    if auth == "bearer":
        if not secret.strip() or any(ord(c) < 0x21 or ord(c) == 0x7F for c in secret):
            raise PermanentError("the destination bearer token must be one word, without control characters")
        return {"Authorization": f"Bearer {secret}"}, _scrubbed(secret)
    return _custom_headers(secret, checksum_header)


def _custom_headers(secret: str, checksum_header: str | None) -> tuple[dict[str, str], tuple[str, ...]]:
    try:
        document: object = json.loads(secret)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not document:
        raise PermanentError("the destination secret for header auth must be a JSON object of headers")
    reserved = _RESERVED_HEADERS | ({checksum_header.lower()} if checksum_header else set())
    headers: dict[str, str] = {}
    for index, (name, value) in enumerate(document.items()):
        if not _HEADER_NAME.match(name) or name.lower() in reserved:
            raise PermanentError(f"header #{index + 1} of the destination secret has an unusable name")
        if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
            raise PermanentError(f"header #{index + 1} of the destination secret needs a one-line text value")
        headers[name] = value
    return headers, _scrubbed(secret, *headers.values())


def _scrubbed(*values: str) -> tuple[str, ...]:
    # Longest first, so a value containing another is replaced whole.
    return tuple(sorted({v for v in values if len(v) >= _MIN_SCRUB_CHARS}, key=len, reverse=True))


def _file(body: Body) -> BinaryIO | Iterable[bytes]:
    return io.BytesIO(body) if isinstance(body, bytes) else body  # BytesIO shares the bytes


def _position(body: BinaryIO | Iterable[bytes]) -> int | None:
    """Where a rewindable body starts, or None for a one-pass iterable."""
    seekable = getattr(body, "seekable", None)
    return cast(BinaryIO, body).tell() if callable(seekable) and seekable() else None


def _chunks(body: BinaryIO | Iterable[bytes], size: int = CHUNK_BYTES) -> Iterator[bytes]:
    read = getattr(body, "read", None)
    yield from iter(lambda: cast(bytes, read(size)), b"") if callable(read) else body


def _exact(body: BinaryIO | Iterable[bytes], length: int, what: str) -> Iterator[bytes]:
    """The body's chunks, failing (and so aborting the request) unless they add up to `length`.
    Short is transient (a source stream cut off may read whole next time); long is a wrong length."""
    sent = 0
    for chunk in _chunks(body):
        if not chunk:
            continue
        sent += len(chunk)
        if sent > length:
            raise PermanentError(f"{what}: the body is longer than the {length} bytes announced")
        yield chunk
    if sent != length:
        raise TransientError(f"{what}: the body ended after {sent} of {length} bytes")


def _read_at_most(response: httpx.Response, limit: int) -> bytes:
    data = bytearray()
    for chunk in response.iter_bytes():
        data += chunk[: limit - len(data)]
        if len(data) >= limit:
            break
    return bytes(data)


_HEAD_ELEMENT: Final = re.compile(r"<(head|script|style)\b.*?</\1\s*>", re.IGNORECASE | re.DOTALL)
_TAG: Final = re.compile(r"<[^>]*>")


def _excerpt(body: bytes, status: str) -> str:
    """A short one-line text of an error body: an HTML error page reduced to its text, without
    the status line it usually repeats (`<h1>409 Conflict</h1>`)."""
    text = body.decode("utf-8", errors="replace")
    if "<" in text:
        text = html.unescape(_TAG.sub(" ", _HEAD_ELEMENT.sub(" ", text)))
    text = " ".join(text.split())
    while status and text.startswith(status):
        text = text[len(status) :].lstrip(" :-")
    return text if len(text) <= _EXCERPT_CHARS else text[: _EXCERPT_CHARS - 1] + "…"
