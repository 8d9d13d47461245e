"""The HTTP PUT destination without a server: URL templates, spec validation, and the client's
requests, error classification and credential hygiene against an in-memory WebDAV fake behind
`httpx.MockTransport` (a fake over mocks: it keeps files and collections like wsgidav does).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.destinations.http_put import (
    HttpPutDestination,
    PutDestinationSpec,
    checksum_algorithm,
    expand,
    format_checksum,
    placeholders,
)
from shared.errors import PermanentError, RetryAfterError, TransientError, ValidationError

pytestmark = pytest.mark.unit

BASE = "https://dav.example.test/remote.php/dav"
TEMPLATE = "{base}/projects/{project}/sessions/{session}/{name}"
NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)
PASSWORD = "correct-horse-battery"
TOKEN = "tok-7f3a9c1e5b"


# --- URL templates -------------------------------------------------------------------------------


def test_expand_fills_placeholders_under_the_base() -> None:
    values = {"base": BASE + "/", "project": "cohort-a", "session": "s1", "name": "Patient-1.ndjson"}
    assert expand(TEMPLATE, values) == f"{BASE}/projects/cohort-a/sessions/s1/Patient-1.ndjson"


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        ("a b", "a%20b"),
        ("a/b", "a%2Fb"),  # one segment: a slash inside a value is data
        ("x?y#z", "x%3Fy%23z"),
        ("100%", "100%25"),
        ("%2e%2e", "%252e%252e"),  # already-encoded dots stay data
        ("é", "%C3%A9"),
        ("http://evil.example/x", "http%3A%2F%2Fevil.example%2Fx"),
        ("...", "..."),
    ],
)
def test_every_value_is_one_encoded_segment(value: str, encoded: str) -> None:
    assert expand("{base}/{name}", {"base": BASE, "name": value}) == f"{BASE}/{encoded}"


def test_path_placeholder_keeps_its_slashes_and_encodes_each_segment() -> None:
    url = expand("{base}/out/{path}", {"base": BASE, "path": "2024/a b/Patient-1.ndjson"})
    assert url == f"{BASE}/out/2024/a%20b/Patient-1.ndjson"


@pytest.mark.parametrize("bad", ["", ".", "..", "a\x00b", "line\nbreak", "tab\t", "del\x7f", "c1\x85"])
def test_dangerous_values_are_refused_naming_the_placeholder(bad: str) -> None:
    with pytest.raises(ValidationError) as caught:
        expand(TEMPLATE, {"base": BASE, "project": "p", "session": bad, "name": "f"})
    assert caught.value.field == "destination.url_template"
    assert "{session}" in str(caught.value)


@pytest.mark.parametrize("bad", ["../x", "a/../b", "a/./b", "/abs", "a//b", "a/", "a/\x00"])
def test_path_values_with_dot_or_empty_segments_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError, match=r"\{path\}"):
        expand("{base}/{path}", {"base": BASE, "path": bad})


def test_unknown_placeholder_is_named() -> None:
    with pytest.raises(ValidationError) as caught:
        expand(TEMPLATE, {"base": BASE, "project": "p", "name": "f"})
    assert "unknown placeholder {session}" in str(caught.value)
    assert caught.value.field == "destination.url_template"


@pytest.mark.parametrize(
    "template",
    [
        "http://evil.example/{name}",  # absolute: another host
        "//evil.example/{name}",
        "{name}",
        "{base}{name}",  # glued to the base: could change the last base segment
        "{base}/../{name}",
        "{base}/./{name}",
        "{base}//{name}",
        "{base}/a?x={name}",
        "{base}/a#{name}",
        "{base}/{name}/{base}",
        "{base}/{name",
        "{base}/{bad name}",
        "{base}/{}",
        "{base}/a b/{name}",
    ],
)
def test_templates_that_could_leave_the_base_are_refused(template: str) -> None:
    with pytest.raises(ValidationError):
        expand(template, {"base": BASE, "name": "f"})


def test_the_result_must_stay_under_the_base() -> None:
    # A base value whose path the literal text cannot extend below (defence in depth).
    with pytest.raises(ValidationError, match="leaves the base URL"):
        expand("{base}/{name}", {"base": "https://dav.example.test/a?q=1", "name": "f"})


def test_placeholders_lists_what_the_caller_owes() -> None:
    assert placeholders(TEMPLATE) == ("project", "session", "name")
    assert placeholders("{base}/{name}/{name}-{part}") == ("name", "part")


def test_url_for_reserves_base() -> None:
    spec = _spec()
    assert spec.url_for({"project": "p", "session": "s", "name": "n"}) == f"{BASE}/projects/p/sessions/s/n"
    with pytest.raises(ValidationError, match="base"):
        spec.url_for({"base": "https://evil.example", "project": "p", "session": "s", "name": "n"})


_SEGMENT_VALUES = st.text(min_size=1, max_size=40).filter(
    lambda v: v not in (".", "..") and not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in v)
)


@given(_SEGMENT_VALUES, _SEGMENT_VALUES)
def test_any_accepted_value_round_trips_and_stays_under_the_base(project: str, name: str) -> None:
    url = expand("{base}/p/{project}/{name}", {"base": BASE, "project": project, "name": name})
    parts = urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("https", "dav.example.test", "", "")
    assert parts.path.startswith("/remote.php/dav/p/")
    segments = parts.path.split("/")
    assert [unquote(s) for s in segments[-2:]] == [project, name]


# --- the spec ------------------------------------------------------------------------------------


def _spec(**overrides: Any) -> PutDestinationSpec:
    fields: dict[str, Any] = {"url_template": TEMPLATE, "base_url": BASE}
    fields.update(overrides)
    return PutDestinationSpec(**fields)


def _record(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"kind": "http_put", "url_template": TEMPLATE, "base_url": BASE}
    data.update(overrides)
    return data


def test_spec_round_trips_with_defaults() -> None:
    spec = PutDestinationSpec.from_dict(_record())
    assert spec == _spec()
    assert (spec.auth, spec.secret_name, spec.create_parents, spec.checksum_header, spec.verify) == (
        "none",
        None,
        False,
        None,
        True,
    )
    full = _spec(auth="basic", secret_name="export-1-destination-abc", create_parents=True)
    full = PutDestinationSpec.from_dict(full.to_dict())
    assert full.to_dict() == {
        "kind": "http_put",
        "url_template": TEMPLATE,
        "base_url": BASE,
        "auth": "basic",
        "secret_name": "export-1-destination-abc",
        "create_parents": True,
        "checksum_header": None,
        "verify": True,
    }


def test_checksum_header_is_matched_case_insensitively() -> None:
    assert (
        PutDestinationSpec.from_dict(_record(checksum_header="content-md5")).checksum_header == "Content-MD5"
    )
    assert (
        PutDestinationSpec.from_dict(_record(checksum_header="REPR-DIGEST")).checksum_header == "Repr-Digest"
    )


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"kind": "blob"}, "destination.kind"),
        ({"base_url": "ftp://dav.example.test/x"}, "destination.base_url"),
        ({"base_url": "https://user:pw@dav.example.test/x"}, "destination.base_url"),
        ({"base_url": "https://dav.example.test/x?sig=1"}, "destination.base_url"),
        ({"base_url": "https://dav.example.test/a/../b"}, "destination.base_url"),
        ({"base_url": 7}, "destination.base_url"),
        ({"url_template": None}, "destination.url_template"),
        ({"url_template": "https://evil.example/{name}"}, "destination.url_template"),
        ({"url_template": "{base}/{na me}"}, "destination.url_template"),
        ({"auth": "digest"}, "destination.auth"),
        ({"auth": "basic"}, "destination.secret_name"),
        ({"auth": "bearer"}, "destination.secret_name"),
        ({"secret_name": "export-x"}, "destination.secret_name"),
        ({"auth": "basic", "secret_name": "has spaces"}, "destination.secret_name"),
        ({"checksum_header": "X-Checksum"}, "destination.checksum_header"),
        ({"create_parents": "yes"}, "destination.create_parents"),
        ({"verify": 1}, "destination.verify"),
        ({"secret": "user:password"}, "destination.secret"),  # values never go into a record
        ({"password": "x"}, "destination.password"),
    ],
)
def test_spec_errors_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PutDestinationSpec.from_dict(_record(**overrides))
    assert caught.value.field == field


def test_spec_errors_use_the_given_path() -> None:
    with pytest.raises(ValidationError) as caught:
        PutDestinationSpec.from_dict(_record(auth="x"), path="batch.destination")
    assert caught.value.field == "batch.destination.auth"


def test_checksum_formats() -> None:
    digest = hashlib.sha256(b"abc").digest()
    b64 = base64.b64encode(digest).decode()
    assert format_checksum("Digest", digest) == f"sha-256={b64}"
    assert format_checksum("Repr-Digest", digest) == f"sha-256=:{b64}:"
    assert format_checksum("Content-Digest", digest) == f"sha-256=:{b64}:"
    md5 = hashlib.md5(b"abc").digest()
    assert format_checksum("Content-MD5", md5) == base64.b64encode(md5).decode()
    assert (checksum_algorithm("Content-MD5"), checksum_algorithm("Digest")) == ("md5", "sha256")


# --- a WebDAV fake behind MockTransport --------------------------------------------------------------

Responder = Callable[[httpx.Request], httpx.Response | None]


@dataclass
class FakeDav:
    """Files and collections by path; 409 for a missing parent, 405 for MKCOL on an existing one.
    `script` answers first when it returns a response (faults); `head_length` lies on HEAD."""

    base_path: str = urlsplit(BASE).path
    files: dict[str, bytes] = field(default_factory=dict)
    collections: set[str] = field(default_factory=set)
    requests: list[httpx.Request] = field(default_factory=list)
    bodies: list[bytes] = field(default_factory=list)
    script: list[Responder] = field(default_factory=list)
    head_length: int | None = None

    def __post_init__(self) -> None:
        self.collections.add(self.base_path)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = request.read()
        self.requests.append(request)
        self.bodies.append(body)
        for responder in self.script:
            answer = responder(request)
            if answer is not None:
                return answer
        path = request.url.path.rstrip("/")
        parent = path.rsplit("/", 1)[0]
        if request.method == "PUT":
            if parent not in self.collections:
                return httpx.Response(
                    409, text="<html><p>409 Conflict: PUT parent must be a collection</p></html>"
                )
            existed = path in self.files
            self.files[path] = body
            return httpx.Response(204 if existed else 201)
        if request.method == "MKCOL":
            if path in self.collections:
                return httpx.Response(405)
            if parent not in self.collections:
                return httpx.Response(409)
            self.collections.add(path)
            return httpx.Response(201)
        if request.method == "HEAD":
            if path not in self.files:
                return httpx.Response(404)
            size = len(self.files[path]) if self.head_length is None else self.head_length
            return httpx.Response(200, headers={"Content-Length": str(size)})
        if request.method == "DELETE":
            return httpx.Response(204 if self.files.pop(path, None) is not None else 404)
        if request.method == "OPTIONS":
            return httpx.Response(200, headers={"DAV": "1,2"})
        return httpx.Response(405)

    def methods(self) -> list[str]:
        return [f"{r.method} {r.url.path.removeprefix(self.base_path)}" for r in self.requests]

    def mkdirs(self, relative: str) -> None:
        path = self.base_path
        for segment in relative.strip("/").split("/"):
            path = f"{path}/{segment}"
            self.collections.add(path)


def _destination(fake: FakeDav, secret: str | None = None, **spec: Any) -> HttpPutDestination:
    client = httpx.Client(transport=httpx.MockTransport(fake))
    return HttpPutDestination(_spec(**spec), client, secret, now=lambda: NOW)


def _answer(status: int, method: str | None = None, **kwargs: Any) -> Responder:
    def respond(request: httpx.Request) -> httpx.Response | None:
        return httpx.Response(status, **kwargs) if method in (None, request.method) else None

    return respond


def _chunks(data: bytes, size: int = 3) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


URL = f"{BASE}/out/f.ndjson"


def test_put_streams_the_body_with_its_length_and_verifies() -> None:
    fake = FakeDav()
    fake.mkdirs("out")
    result = _destination(fake).put(URL, _chunks(b'{"a":1}\n' * 5), 40, "application/fhir+ndjson")
    assert (result.status, result.bytes, result.verified) == (201, 40, True)
    assert fake.files["/remote.php/dav/out/f.ndjson"] == b'{"a":1}\n' * 5
    put = fake.requests[0]
    assert put.headers["Content-Length"] == "40" and "Transfer-Encoding" not in put.headers
    assert put.headers["Content-Type"] == "application/fhir+ndjson"
    assert fake.methods() == ["PUT /out/f.ndjson", "HEAD /out/f.ndjson"]
    again = _destination(fake).put(URL, b"short", 5, "text/plain")
    assert again.status == 204 and fake.files["/remote.php/dav/out/f.ndjson"] == b"short"


def test_a_file_is_read_from_its_position() -> None:
    fake = FakeDav()
    fake.mkdirs("out")
    body = io.BytesIO(b"HEADERpayload")
    body.seek(6)
    _destination(fake).put(URL, body, 7, "application/octet-stream")
    assert fake.files["/remote.php/dav/out/f.ndjson"] == b"payload"


def test_verify_catches_a_short_write() -> None:
    fake = FakeDav(head_length=3)
    fake.mkdirs("out")
    with pytest.raises(TransientError, match="holds 3 bytes after the upload, not 10"):
        _destination(fake).put(URL, b"0123456789", 10, "text/plain")


def test_verify_when_the_server_cannot_say() -> None:
    fake = FakeDav(script=[_answer(405, "HEAD")])
    fake.mkdirs("out")
    assert _destination(fake).put(URL, b"x", 1, "text/plain").verified is False
    fake = FakeDav(script=[_answer(200, "HEAD")])  # no Content-Length
    fake.mkdirs("out")
    assert _destination(fake).put(URL, b"x", 1, "text/plain").verified is False
    fake = FakeDav()
    fake.mkdirs("out")
    assert _destination(fake, verify=False).put(URL, b"x", 1, "text/plain").verified is False
    assert fake.methods() == ["PUT /out/f.ndjson"]


def test_a_file_missing_after_the_put_is_transient() -> None:
    fake = FakeDav(script=[_answer(404, "HEAD")])
    fake.mkdirs("out")
    with pytest.raises(TransientError, match="not there after the upload"):
        _destination(fake).put(URL, b"x", 1, "text/plain")


def test_a_body_of_another_length_aborts_the_upload() -> None:
    fake = FakeDav()
    fake.mkdirs("out")
    with pytest.raises(TransientError, match="ended after 6 of 10 bytes"):
        _destination(fake).put(URL, _chunks(b"012345"), 10, "text/plain")
    with pytest.raises(PermanentError, match="longer than the 4 bytes"):
        _destination(fake).put(URL, _chunks(b"012345"), 4, "text/plain")
    assert fake.files == {}


# --- auth and credential hygiene -----------------------------------------------------------------


def _authorization(fake: FakeDav) -> str | None:
    value: str | None = fake.requests[0].headers.get("Authorization")
    return value


def test_auth_goes_in_headers_only() -> None:
    fake = FakeDav()
    fake.mkdirs("out")
    _destination(fake, f"alice:{PASSWORD}", auth="basic", secret_name="s").put(URL, b"x", 1, "text/plain")
    assert _authorization(fake) == "Basic " + base64.b64encode(f"alice:{PASSWORD}".encode()).decode()
    assert all(r.url.userinfo == b"" and PASSWORD not in str(r.url) for r in fake.requests)

    fake.requests.clear()
    _destination(fake, TOKEN, auth="bearer", secret_name="s").put(URL, b"x", 1, "text/plain")
    assert _authorization(fake) == f"Bearer {TOKEN}"

    fake.requests.clear()
    headers = json.dumps({"X-Api-Key": TOKEN, "X-Tenant": "t1"})
    _destination(fake, headers, auth="headers", secret_name="s").put(URL, b"x", 1, "text/plain")
    assert fake.requests[0].headers["X-Api-Key"] == TOKEN and fake.requests[0].headers["X-Tenant"] == "t1"

    fake.requests.clear()
    _destination(fake).put(URL, b"x", 1, "text/plain")
    assert _authorization(fake) is None


@pytest.mark.parametrize(
    ("auth", "secret"),
    [
        ("basic", PASSWORD),  # no user
        ("basic", f"alice:{PASSWORD}\r\nX-Evil: 1"),
        ("bearer", f"{TOKEN}\nX-Evil: 1"),
        ("bearer", f"two {TOKEN}"),
        ("headers", f"not json {TOKEN}"),
        ("headers", json.dumps([TOKEN])),
        ("headers", json.dumps({"Content-Length": TOKEN})),
        ("headers", json.dumps({"X-Key": [TOKEN]})),
        ("headers", json.dumps({"Bad Name": TOKEN})),
        ("headers", json.dumps({"X-Key": f"{TOKEN}\r\nX-Evil: 1"})),
    ],
)
def test_bad_secrets_are_refused_without_quoting_them(auth: str, secret: str) -> None:
    with pytest.raises(PermanentError) as caught:
        _destination(FakeDav(), secret, auth=auth, secret_name="s")
    assert TOKEN not in str(caught.value) and PASSWORD not in str(caught.value)


def test_the_checksum_header_cannot_be_overridden_by_a_headers_secret() -> None:
    with pytest.raises(PermanentError):
        _destination(
            FakeDav(), json.dumps({"digest": "x"}), auth="headers", secret_name="s", checksum_header="Digest"
        )


def test_secret_presence_must_match_the_auth_kind() -> None:
    with pytest.raises(ValueError, match="resolved"):
        _destination(FakeDav(), None, auth="bearer", secret_name="s")
    with pytest.raises(ValueError, match="no destination secret"):
        _destination(FakeDav(), TOKEN)


def test_repr_carries_no_secret() -> None:
    destination = _destination(FakeDav(), TOKEN, auth="bearer", secret_name="s")
    assert TOKEN not in repr(destination) and "dav.example.test" in repr(destination)


def test_refused_credentials_are_permanent_and_never_echoed() -> None:
    echo = f"<html><body>bad header Authorization: Bearer {TOKEN}</body></html>"
    fake = FakeDav(script=[_answer(401, text=echo)])
    destination = _destination(fake, TOKEN, auth="bearer", secret_name="s")
    for call in (destination.check_connection, lambda: destination.put(URL, b"x", 1, "text/plain")):
        with pytest.raises(PermanentError, match="credentials refused") as caught:
            call()
        assert TOKEN not in str(caught.value) and "HTTP 401" in str(caught.value)
    with pytest.raises(PermanentError, match="requires credentials"):
        _destination(FakeDav(script=[_answer(401)])).check_connection()


def test_server_echoes_are_scrubbed_from_other_errors_too() -> None:
    fake = FakeDav(script=[_answer(400, text=f"bad request from alice:{PASSWORD}")])
    with pytest.raises(PermanentError) as caught:
        _destination(fake, f"alice:{PASSWORD}", auth="basic", secret_name="s").put(URL, b"x", 1, "text/plain")
    assert PASSWORD not in str(caught.value) and "HTTP 400" in str(caught.value)


# --- error classification --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "headers", "error", "delay"),
    [
        (429, {"Retry-After": "7"}, RetryAfterError, 7.0),
        (429, {}, RetryAfterError, 10.0),
        (503, {"Retry-After": "Wed, 01 Jan 2025 12:00:30 GMT"}, RetryAfterError, 30.0),
        (503, {}, TransientError, None),
        (500, {}, TransientError, None),
        (502, {}, TransientError, None),
        (408, {}, TransientError, None),
        (400, {}, PermanentError, None),
        (404, {}, PermanentError, None),
        (413, {}, PermanentError, None),
        (501, {}, PermanentError, None),
        (302, {"Location": "https://elsewhere.example/x"}, PermanentError, None),
    ],
)
def test_status_classification(
    status: int, headers: dict[str, str], error: type[Exception], delay: float | None
) -> None:
    fake = FakeDav(script=[_answer(status, "PUT", headers=headers)])
    with pytest.raises(error) as caught:
        _destination(fake).put(URL, b"x", 1, "text/plain")
    assert type(caught.value) is error
    assert f"PUT {URL}: HTTP {status}" in str(caught.value)
    if delay is not None:
        assert isinstance(caught.value, RetryAfterError) and caught.value.retry_after_s == delay
    assert len(fake.requests) == 1  # no redirect followed, no retry inside


def test_permanent_errors_carry_the_servers_reason() -> None:
    page = "<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1><p>quota &amp; limits exceeded</p></body></html>"
    fake = FakeDav(script=[_answer(403, text=page)])
    with pytest.raises(PermanentError, match=r"HTTP 403 Forbidden: Forbidden quota & limits exceeded$"):
        _destination(fake).put(URL, b"x", 1, "text/plain")
    outcome = {"resourceType": "OperationOutcome", "issue": [{"diagnostics": "type not allowed"}]}
    fake = FakeDav(script=[_answer(422, json=outcome)])
    with pytest.raises(PermanentError, match="HTTP 422 Unprocessable Entity: type not allowed$"):
        _destination(fake).put(URL, b"x", 1, "text/plain")
    fake = FakeDav(script=[_answer(400, text="x" * 5000)])
    with pytest.raises(PermanentError) as caught:
        _destination(fake).put(URL, b"x", 1, "text/plain")
    assert len(str(caught.value)) < 400


@pytest.mark.parametrize(
    ("exc", "text"),
    [(httpx.ConnectError("refused"), "connection failed"), (httpx.ReadTimeout("slow"), "timed out")],
)
def test_network_failures_are_transient(exc: Exception, text: str) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    destination = HttpPutDestination(_spec(), httpx.Client(transport=httpx.MockTransport(fail)), None)
    with pytest.raises(TransientError, match=text):
        destination.put(URL, b"x", 1, "text/plain")
    with pytest.raises(TransientError, match=text):
        destination.check_connection()


def test_urls_outside_the_base_are_refused_before_any_request() -> None:
    fake = FakeDav()
    destination = _destination(fake, TOKEN, auth="bearer", secret_name="s")
    for url in (
        "https://evil.example/remote.php/dav/x",
        "http://dav.example.test/remote.php/dav/x",
        "https://user@dav.example.test/remote.php/dav/x",
        "https://dav.example.test/remote.php/davx",
        f"{BASE}/a/../../x",
        BASE,
    ):
        with pytest.raises(PermanentError, match="not under"):
            destination.put(url, b"x", 1, "text/plain")
        with pytest.raises(PermanentError, match="not under"):
            destination.delete(url)
    assert fake.requests == []


# --- parents, checksum, delete, connection check -------------------------------------------------


def test_missing_parents_without_create_parents_is_a_409_with_a_hint() -> None:
    with pytest.raises(PermanentError, match="HTTP 409.*PUT parent must be a collection.*create_parents"):
        _destination(FakeDav()).put(URL, b"x", 1, "text/plain")


def test_create_parents_walks_up_then_down_once_per_folder() -> None:
    fake = FakeDav()
    fake.mkdirs("a")
    destination = _destination(fake, create_parents=True)
    destination.put(f"{BASE}/a/b/c/f1", b"x", 1, "text/plain")
    assert fake.methods() == [
        "MKCOL /a/b/c/",
        "MKCOL /a/b/",
        "MKCOL /a/b/c/",
        "PUT /a/b/c/f1",
        "HEAD /a/b/c/f1",
    ]
    fake.requests.clear()
    destination.put(f"{BASE}/a/b/c/f2", b"y", 1, "text/plain")
    destination.put(f"{BASE}/a/b/f3", b"z", 1, "text/plain")
    assert [m for m in fake.methods() if m.startswith("MKCOL")] == []  # known to exist now
    fake.requests.clear()
    _destination(fake, create_parents=True).put(f"{BASE}/a/b/f4", b"z", 1, "text/plain")
    assert fake.methods()[0] == "MKCOL /a/b/"  # a new instance asks once (405: exists)
    _destination(fake, create_parents=True).put(f"{BASE}/top", b"z", 1, "text/plain")


def test_a_parent_removed_after_it_was_made_is_made_again() -> None:
    fake = FakeDav()
    destination = _destination(fake, create_parents=True)
    destination.put(f"{BASE}/a/f1", b"x", 1, "text/plain")
    fake.collections.discard("/remote.php/dav/a")
    result = destination.put(f"{BASE}/a/f2", io.BytesIO(b"xyz"), 3, "text/plain")  # rewindable: resent
    assert result.status == 201 and fake.files["/remote.php/dav/a/f2"] == b"xyz"
    fake.collections.discard("/remote.php/dav/a")
    with pytest.raises(TransientError, match="made again, retry"):
        destination.put(f"{BASE}/a/f3", _chunks(b"xyz"), 3, "text/plain")  # one pass only
    assert "/remote.php/dav/a" in fake.collections


def test_a_missing_base_is_permanent() -> None:
    fake = FakeDav()
    fake.collections.clear()
    with pytest.raises(PermanentError, match="does the base URL exist"):
        _destination(fake, create_parents=True).put(f"{BASE}/a/f", b"x", 1, "text/plain")


def test_checksum_header_from_a_first_pass_or_from_the_caller() -> None:
    data = b"0123456789" * 7
    fake = FakeDav()
    fake.mkdirs("out")
    _destination(fake, checksum_header="Content-MD5").put(URL, io.BytesIO(data), len(data), "text/plain")
    assert fake.requests[0].headers["Content-MD5"] == base64.b64encode(hashlib.md5(data).digest()).decode()
    assert fake.files["/remote.php/dav/out/f.ndjson"] == data  # rewound after hashing

    fake.requests.clear()
    sha = hashlib.sha256(data).hexdigest()
    destination = _destination(fake, checksum_header="Repr-Digest")
    destination.put(URL, _chunks(data), len(data), "text/plain", checksum=sha.upper())
    expected = base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert fake.requests[0].headers["Repr-Digest"] == f"sha-256=:{expected}:"

    with pytest.raises(ValueError, match="pass checksum="):
        destination.put(URL, _chunks(data), len(data), "text/plain")
    with pytest.raises(ValueError, match="hex digest"):
        destination.put(URL, data, len(data), "text/plain", checksum="zz")
    with pytest.raises(ValueError, match="sha256"):
        destination.put(URL, data, len(data), "text/plain", checksum=hashlib.md5(data).hexdigest())
    fake.requests.clear()
    with pytest.raises(PermanentError, match="has 70 bytes, not the 71"):
        destination.put(URL, io.BytesIO(data), 71, "text/plain")
    assert fake.requests == []  # found in the first pass, before anything was sent


def test_delete_tolerates_missing_files_only() -> None:
    fake = FakeDav(files={"/remote.php/dav/out/f.ndjson": b"x"})
    destination = _destination(fake)
    destination.delete(URL)
    destination.delete(URL)
    assert fake.files == {}
    with pytest.raises(TransientError):
        _destination(FakeDav(script=[_answer(500)])).delete(URL)
    with pytest.raises(PermanentError, match="HTTP 403"):
        _destination(FakeDav(script=[_answer(403)])).delete(URL)


@pytest.mark.parametrize("status", [200, 204, 301, 404, 405])
def test_check_connection_reachable(status: int) -> None:
    _destination(FakeDav(script=[_answer(status)])).check_connection()


def test_check_connection_failures() -> None:
    with pytest.raises(PermanentError, match="OPTIONS .*credentials refused"):
        _destination(FakeDav(script=[_answer(403)]), TOKEN, auth="bearer", secret_name="s").check_connection()
    with pytest.raises(RetryAfterError):
        _destination(FakeDav(script=[_answer(503, headers={"Retry-After": "1"})])).check_connection()
    fake = FakeDav(script=[_answer(501, "OPTIONS")])
    _destination(fake).check_connection()
    assert fake.methods() == ["OPTIONS ", "HEAD "]
