"""`HttpItemSource`: items are http(s) URLs, read with GET through the service's `httpx.Client`.

The client is passed in: the service's own (`shared.sources.make_http_client`) connects only where
the outbound policy (`shared.outbound`) allows, so a refused address fails with OutboundRefused
(a PermanentError) before any byte is sent. Redirects are never followed (one could carry the
bearer token elsewhere, or lead to an address the item name did not show).

    404, 410, 403, other 4xx, 3xx, 501    -> PermanentError
    408, 5xx, timeouts, connection errors -> TransientError (429, 503 + Retry-After: RetryAfterError)

The bytes copied are the entity as served: `Accept-Encoding: identity` is asked and an encoded
answer is refused, so sizes and versions describe what is written. The size is Content-Length,
unknown (-1) without it; the version is the ETag, else Last-Modified, else "". Messages name the
URL with credentials removed (`redact_url`) and never the bearer token.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Final
from urllib.parse import urlsplit

import httpx

from shared.errors import PermanentError, TransientError, ValidationError
from shared.items.base import (
    CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    UNKNOWN_SIZE,
    ItemInfo,
    ItemKind,
    check_common,
)
from shared.sources import classify_status, classify_transport_error, redact_url

__all__ = ["HttpItemSource"]

_KIND: Final[ItemKind] = "url"
# An error answer is read only this far: enough for its message, never a whole page of HTML.
_MAX_ERROR_BODY: Final = 64 * 1024


def _version(headers: httpx.Headers) -> str:
    return headers.get("ETag") or headers.get("Last-Modified") or ""


def _size(headers: httpx.Headers) -> int:
    text = headers.get("Content-Length", "")
    return int(text) if text.isdigit() else UNKNOWN_SIZE


class HttpItemSource:
    """Files on web servers, named by URL. Implements `ItemSource`."""

    kind: Final[ItemKind] = _KIND

    def __init__(
        self,
        client: httpx.Client,
        *,
        bearer_token: str | None = None,
        chunk_size: int = CHUNK_SIZE,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._client = client
        self._token = bearer_token
        self._chunk_size = chunk_size
        self._now = now

    def check(self, item: str) -> None:
        check_common(item)
        if any(c.isspace() for c in item):
            raise ValidationError("item", "a URL must not contain spaces")
        try:
            parts = urlsplit(item)
            parts.port  # noqa: B018 - parsing the port is the check
        except ValueError:
            raise ValidationError("item", "not a valid URL") from None
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValidationError("item", "must be an absolute http or https URL")
        if parts.username is not None or parts.password is not None:
            # Credentials in item names would land in job records; secrets go to the secret store.
            raise ValidationError("item", "must not contain a user name or password")

    def stat(self, item: str) -> ItemInfo:
        self.check(item)
        response = self._send("HEAD", item, {})
        response.close()
        if response.status_code in (405, 501):
            # No HEAD here: the headers of a GET tell the same; the body is never read.
            response = self._send("GET", item, {})
            response.close()
        return self._info(item, response)

    @contextmanager
    def open(self, item: str, *, offset: int = 0, version: str | None = None) -> Iterator[Iterator[bytes]]:
        self.check(item)
        if offset < 0:
            raise ValueError("offset must not be negative")
        headers: dict[str, str] = {}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if version and not version.startswith("W/"):
                # A changed item answers 200 with all of it instead of the range of another version.
                headers["If-Range"] = version
        response = self._send("GET", item, headers, allow_416=offset > 0)
        try:
            if response.status_code == 416:
                # Range past the end: a resumed read that already had every byte.
                yield iter(())
                return
            if version and _version(response.headers) != version:
                raise TransientError(
                    f"GET {redact_url(item)}: it changed since it was listed; a retry reads the new version"
                )
            skip = 0
            if offset and response.status_code != 206:
                skip = offset  # the server ignored the range: read up to the offset and drop it
            elif offset and not response.headers.get("Content-Range", "").startswith(f"bytes {offset}-"):
                raise PermanentError(f"GET {redact_url(item)}: the server answered another range than asked")
            yield self._chunks(response, item, skip)
        finally:
            response.close()

    def _info(self, item: str, response: httpx.Response) -> ItemInfo:
        content_type = response.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
        return ItemInfo(
            name=item,
            size=_size(response.headers),
            content_type=content_type,
            version=_version(response.headers),
        )

    def _send(
        self, method: str, item: str, headers: dict[str, str], *, allow_416: bool = False
    ) -> httpx.Response:
        """Send with the body unread; raise the domain error for any answer but 2xx."""
        what = f"{method} {redact_url(item)}"
        headers = {"Accept-Encoding": "identity", **headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        request = self._client.build_request(method, item, headers=headers)
        try:
            response = self._client.send(request, stream=True, follow_redirects=False)
        except httpx.RequestError as exc:
            raise classify_transport_error(exc, what) from None
        status = response.status_code
        if (
            200 <= status < 300
            or (allow_416 and status == 416)
            or (method == "HEAD" and status in (405, 501))
        ):
            encoding = response.headers.get("Content-Encoding", "identity").lower()
            if encoding != "identity" and 200 <= status < 300:
                response.close()
                raise PermanentError(
                    f"{what}: the server sent {encoding}-encoded content though identity was asked"
                )
            return response
        try:
            body = self._error_body(response)
        finally:
            response.close()
        if 300 <= status < 400:
            raise PermanentError(
                f"{what}: HTTP {status} redirect; redirects are not followed, give the final URL"
            )
        raise classify_status(response, body, what, now=self._now, secret=self._token)

    def _error_body(self, response: httpx.Response) -> bytes:
        body = bytearray()
        try:
            for data in response.iter_raw():
                body += data
                if len(body) >= _MAX_ERROR_BODY:
                    break
        except httpx.HTTPError:
            return bytes(body)  # the status says what failed; the rest of a broken body adds nothing
        return bytes(body[:_MAX_ERROR_BODY])

    def _chunks(self, response: httpx.Response, item: str, skip: int) -> Iterator[bytes]:
        try:
            for data in response.iter_raw(self._chunk_size):
                if skip >= len(data):
                    skip -= len(data)
                    continue
                if skip:
                    data, skip = data[skip:], 0
                yield data
        except httpx.RequestError as exc:
            raise classify_transport_error(exc, f"GET {redact_url(item)}") from None
