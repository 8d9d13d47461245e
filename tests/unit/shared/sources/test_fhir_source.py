"""FhirSource against httpx.MockTransport: paging, page parsing, and error classification."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from shared.errors import PermanentError, RetryAfterError, SourceDataError, TransientError
from shared.sources import Page, Source
from tests.unit.shared.sources.fakes import (
    BASE,
    TOKEN,
    always,
    bundle,
    entry,
    json_response,
    make_source,
    outcome,
    resource,
)

pytestmark = pytest.mark.unit


def patients(*ids: str) -> list[dict[str, object]]:
    return [entry(resource("Patient", i, active=True)) for i in ids]


# -- paging ------------------------------------------------------------------------------------


def test_follows_next_links_and_returns_ndjson_pages() -> None:
    page2 = f"{BASE}/Patient?_count=2&ct=page2"
    page3 = f"{BASE}/Patient?_count=2&ct=page3"
    pages = {
        None: bundle(patients("a", "b"), next_url=page2),
        "page2": bundle(patients("c", "d"), next_url=page3),
        "page3": bundle(patients("e")),
    }
    source, recorder = make_source(lambda r: json_response(200, pages[r.url.params.get("ct")]), page_size=2)
    assert isinstance(source, Source)

    seen: list[Page] = []
    cursor: str | None = None
    while True:
        page = source.fetch_page("Patient", cursor)
        seen.append(page)
        if page.is_last:
            break
        cursor = page.next_cursor

    assert [p.count for p in seen] == [2, 2, 1]
    assert [p.next_cursor for p in seen] == [page2, page3, None]  # the cursor is the server's next URL
    ids = [json.loads(line)["id"] for p in seen for line in p.ndjson.splitlines()]
    assert ids == ["a", "b", "c", "d", "e"]
    assert [str(r.url) for r in recorder.requests][1:] == [page2, page3]  # cursors are used verbatim


def test_ndjson_is_compact_one_resource_per_newline_terminated_line() -> None:
    res = resource("Patient", "p1", name=[{"text": "line one\nline two"}], note="Zoë")
    source, _ = make_source(always(200, bundle([entry(res)])))
    page = source.fetch_page("Patient", None)
    assert page.ndjson.endswith(b"\n") and page.ndjson.count(b"\n") == 1  # newlines in strings stay escaped
    assert b": " not in page.ndjson and b", " not in page.ndjson
    assert json.loads(page.ndjson) == res
    assert "Zoë".encode() in page.ndjson  # UTF-8, not \u escapes
    assert page.size_bytes == len(page.ndjson)


def test_first_request_carries_count_since_and_type_filter() -> None:
    source, recorder = make_source(
        always(200, bundle([])),
        since="2024-02-03T04:05:06Z",
        page_size=77,
        type_filters=["Observation?status=final"],
    )
    page = source.fetch_page("Observation", None)
    assert page.count == 0 and page.ndjson == b"" and page.is_last
    sent = recorder.requests[0]
    assert sent.url.path == "/r4/Observation"
    assert sent.url.params.multi_items() == [
        ("_count", "77"),
        ("_lastUpdated", "gt2024-02-03T04:05:06Z"),
        ("status", "final"),
    ]
    assert sent.headers["Accept"].startswith("application/fhir+json")


def test_bearer_token_is_sent_and_never_shown() -> None:
    source, recorder = make_source(always(200, bundle([])), bearer_token=TOKEN)
    source.fetch_page("Patient", None)
    assert recorder.requests[0].headers["Authorization"] == f"Bearer {TOKEN}"
    assert TOKEN not in repr(source)


def test_no_authorization_header_without_a_token() -> None:
    source, recorder = make_source(always(200, bundle([])))
    source.fetch_page("Patient", None)
    assert "Authorization" not in recorder.requests[0].headers


def test_relative_next_link_is_made_absolute() -> None:
    source, _ = make_source(always(200, bundle(patients("a"), next_url="Patient?ct=2")))
    assert source.fetch_page("Patient", None).next_cursor == f"{BASE}/Patient?ct=2"


def test_next_link_to_another_origin_is_refused() -> None:
    source, _ = make_source(always(200, bundle(patients("a"), next_url="https://evil.test/r4/Patient?ct=2")))
    with pytest.raises(SourceDataError, match="origin"):
        source.fetch_page("Patient", None)


def test_foreign_cursor_is_refused_before_any_request() -> None:
    source, recorder = make_source(always(200, bundle([])), bearer_token=TOKEN)
    with pytest.raises(PermanentError, match="origin"):
        source.fetch_page("Patient", "https://evil.test/r4/Patient?ct=2")
    assert recorder.requests == []  # the token never left


def test_next_link_to_the_same_page_is_refused() -> None:
    cursor = f"{BASE}/Patient?ct=loop"
    source, _ = make_source(always(200, bundle(patients("a"), next_url=cursor)))
    with pytest.raises(SourceDataError, match="same page"):
        source.fetch_page("Patient", cursor)


# -- entries -----------------------------------------------------------------------------------


def test_outcome_and_include_entries_are_skipped() -> None:
    entries = [
        entry(resource("Patient", "a")),
        entry(outcome("parameter ignored"), mode="outcome"),
        entry(resource("Organization", "o1"), mode="include"),
        entry(resource("Patient", "b"), mode=None),  # servers may omit search.mode
        entry(outcome("no mode"), mode=None),
    ]
    source, _ = make_source(always(200, bundle(entries)))
    page = source.fetch_page("Patient", None)
    assert page.count == 2
    assert [json.loads(line)["id"] for line in page.ndjson.splitlines()] == ["a", "b"]


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b'{"resourceType": "Bundle", "entry": [', "not JSON"),
        (b"<html>maintenance</html>", "not JSON"),
        (json.dumps(outcome("x")).encode(), "not a Bundle"),
        (json.dumps({**bundle([]), "type": "batch-response"}).encode(), "searchset"),
        (json.dumps(bundle([entry(None)])).encode(), "entry 0 has no resource"),
        (json.dumps(bundle([*patients("a"), entry({"id": "x"})])).encode(), "entry 1 is a None"),
        (json.dumps(bundle([entry(resource("Observation", "o"))])).encode(), "expected Patient"),
        (json.dumps(bundle([entry({"resourceType": "Patient"})])).encode(), "no id"),
        (json.dumps(bundle([entry(resource("Patient", "a"), mode="weird")])).encode(), "search.mode"),
        (json.dumps({**bundle([]), "entry": {"a": 1}}).encode(), "not a list"),
    ],
)
def test_malformed_pages_raise_source_data_error_naming_type_and_page(body: bytes, problem: str) -> None:
    cursor = f"{BASE}/Patient?_count=2&ct=p7"
    source, _ = make_source(always(200, body), bearer_token=TOKEN)
    with pytest.raises(SourceDataError) as caught:
        source.fetch_page("Patient", cursor)
    message = str(caught.value)
    assert problem in message
    assert message.startswith(f"Patient page {cursor}:")
    assert TOKEN not in message


def test_page_over_the_size_limit_is_refused() -> None:
    source, _ = make_source(always(200, bundle(patients(*[f"p{i}" for i in range(50)]))), max_page_bytes=1000)
    with pytest.raises(SourceDataError, match="larger than 1000 bytes"):
        source.fetch_page("Patient", None)


# -- error classification ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503])
def test_throttling_is_retry_after_in_seconds(status: int) -> None:
    source, _ = make_source(always(status, outcome("slow down"), {"Retry-After": "7"}))
    with pytest.raises(RetryAfterError) as caught:
        source.fetch_page("Patient", None)
    assert caught.value.retry_after_s == 7.0
    assert "slow down" in str(caught.value)


def test_retry_after_as_http_date_is_relative_to_the_clock() -> None:
    source, _ = make_source(always(503, b"", {"Retry-After": "Wed, 01 Jan 2025 12:02:00 GMT"}))
    with pytest.raises(RetryAfterError) as caught:
        source.fetch_page("Patient", None)
    assert caught.value.retry_after_s == 120.0


def test_503_without_retry_after_is_an_ordinary_transient_error() -> None:
    source, _ = make_source(always(503, outcome("restarting")))
    with pytest.raises(TransientError) as caught:
        source.fetch_page("Patient", None)
    assert not isinstance(caught.value, RetryAfterError)


def test_retry_after_default_when_absent() -> None:
    source, _ = make_source(always(429, b""), default_retry_after_s=4.5)
    with pytest.raises(RetryAfterError) as caught:
        source.fetch_page("Patient", None)
    assert caught.value.retry_after_s == 4.5


@pytest.mark.parametrize("status", [500, 502, 504, 408])
def test_server_errors_are_transient(status: int) -> None:
    source, _ = make_source(always(status, outcome("database busy")))
    with pytest.raises(TransientError) as caught:
        source.fetch_page("Patient", None)
    assert not isinstance(caught.value, RetryAfterError)
    assert f"HTTP {status}" in str(caught.value) and "database busy" in str(caught.value)


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 501])
def test_client_errors_are_permanent_with_the_outcome_text(status: int) -> None:
    source, _ = make_source(always(status, outcome("Resource type not supported", details="Unknown type")))
    with pytest.raises(PermanentError) as caught:
        source.fetch_page("Patient", None)
    assert not isinstance(caught.value, TransientError)
    assert "Resource type not supported; Unknown type" in str(caught.value)
    assert f"HTTP {status}" in str(caught.value)


def test_error_messages_never_contain_the_token() -> None:
    def echo(request: httpx.Request) -> httpx.Response:
        # A careless server echoing our headers back must not leak the token into our message.
        return json_response(401, outcome(f"bad credentials: {request.headers['Authorization']}"))

    source, _ = make_source(echo, bearer_token=TOKEN)
    with pytest.raises(PermanentError) as caught:
        source.fetch_page("Patient", None)
    assert TOKEN not in str(caught.value)
    assert "bad credentials: Bearer ***" in str(caught.value)


def test_redirects_are_not_followed() -> None:
    source, _ = make_source(always(302, b"", {"Location": "https://elsewhere.test/"}))
    with pytest.raises(PermanentError, match="HTTP 302"):
        source.fetch_page("Patient", None)


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.ConnectTimeout("connect timed out"),
        httpx.ConnectError("refused"),
        httpx.RemoteProtocolError("peer closed connection"),
        httpx.ReadError("reset"),
    ],
)
def test_timeouts_and_connection_errors_are_transient(exc: httpx.RequestError) -> None:
    def fail(request: httpx.Request) -> httpx.Response:
        raise exc

    source, _ = make_source(fail)
    with pytest.raises(TransientError) as caught:
        source.fetch_page("Patient", f"{BASE}/Patient?ct=3")
    assert "Patient page" in str(caught.value) and "ct=3" in str(caught.value)
    assert caught.value.__cause__ is exc


def test_messages_hide_credentials_in_the_base_url() -> None:
    source, _ = make_source(always(500, b""), base_url="https://user:pw@fhir.example.test/r4")
    with pytest.raises(TransientError) as caught:
        source.fetch_page("Patient", None)
    assert "pw" not in str(caught.value) and "user" not in str(caught.value)


# -- check_connection --------------------------------------------------------------------------


def test_check_connection_reads_the_capability_statement() -> None:
    source, recorder = make_source(always(200, {"resourceType": "CapabilityStatement", "status": "active"}))
    source.check_connection()
    assert str(recorder.requests[0].url) == f"{BASE}/metadata"


def test_check_connection_rejects_a_non_fhir_answer() -> None:
    source, _ = make_source(always(200, b"<html>login</html>"))
    with pytest.raises(PermanentError, match="CapabilityStatement.*search failed too"):
        source.check_connection()


def _metadata_then_search(metadata: httpx.Response) -> Callable[[httpx.Request], httpx.Response]:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/metadata"):
            return metadata
        return json_response(200, bundle(patients("a")))

    return answer


@pytest.mark.parametrize(
    "metadata",
    [
        httpx.Response(404, content=b"not found"),
        httpx.Response(200, content=b"<html>no metadata here</html>"),
        json_response(200, {"resourceType": "Patient", "id": "x"}),
    ],
    ids=["404", "html", "not-a-capability-statement"],
)
def test_check_connection_falls_back_to_a_one_resource_search(
    metadata: httpx.Response, caplog: pytest.LogCaptureFixture
) -> None:
    source, recorder = make_source(_metadata_then_search(metadata))
    with caplog.at_level("WARNING", logger="shared.sources.fhir"):
        source.check_connection()
    search = recorder.requests[1].url
    assert search.path == "/r4/Patient" and search.params["_count"] == "1"
    assert "search works" in caplog.text


def test_check_connection_does_not_fall_back_on_a_transient_metadata_failure() -> None:
    source, recorder = make_source(_metadata_then_search(httpx.Response(502)))
    with pytest.raises(TransientError):
        source.check_connection()
    assert len(recorder.requests) == 1


def test_check_connection_classifies_errors() -> None:
    source, _ = make_source(always(503, outcome("starting"), {"Retry-After": "3"}))
    with pytest.raises(RetryAfterError):
        source.check_connection()
    source, _ = make_source(always(403, outcome("forbidden")))
    with pytest.raises(PermanentError, match="forbidden"):
        source.check_connection()
