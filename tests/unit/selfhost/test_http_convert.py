"""Request folding and response encoding as the host and worker do them (selfhost.http.convert)."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from selfhost.http.convert import (
    UnsupportedResponseError,
    build_http_request,
    fold_headers,
    fold_query,
    readable,
    to_response_parts,
)

pytestmark = pytest.mark.unit


def test_headers_are_lower_cased_and_repeats_joined_with_comma() -> None:
    folded = fold_headers([("X-Trace", "a"), ("Accept", "text/html"), ("x-trace", "b"), ("X-TRACE", "c")])
    assert folded == {"x-trace": "a,b,c", "accept": "text/html"}


def test_query_repeats_joined_and_empty_values_dropped() -> None:
    folded = fold_query([("q", "1"), ("empty", ""), ("q", "2"), ("flag", ""), ("mixed", ""), ("mixed", "x")])
    assert folded == {"q": "1,2", "mixed": ",x"}


def test_build_http_request() -> None:
    req = build_http_request(
        method="post",
        url="http://127.0.0.1:7071/api/items/5?q=1&q=2",
        headers=[("Content-Type", "application/json"), ("X-A", "1"), ("x-a", "2")],
        query=[("q", "1"), ("q", "2"), ("none", "")],
        route_params={"id": "5"},
        body=b'{"a": 1}',
    )
    assert req.method == "POST"
    assert req.url == "http://127.0.0.1:7071/api/items/5?q=1&q=2"
    assert req.headers["X-A"] == "1,2"  # case-insensitive mapping
    assert dict(req.params) == {"q": "1,2"}
    assert dict(req.route_params) == {"id": "5"}
    assert req.get_json() == {"a": 1}
    assert req.get_body() == b'{"a": 1}'


def test_response_text_mimetype_gets_charset() -> None:
    parts = to_response_parts(func.HttpResponse("héllo", status_code=201))
    assert parts.status == 201
    assert ("Content-Type", "text/plain; charset=utf-8") in parts.headers
    assert parts.body == "héllo".encode()


def test_response_non_text_mimetype_has_no_charset() -> None:
    parts = to_response_parts(func.HttpResponse(b"{}", mimetype="application/json"))
    assert ("Content-Type", "application/json") in parts.headers


def test_response_explicit_content_type_wins_and_repeated_headers_survive() -> None:
    resp = func.HttpResponse("x", headers={"content-type": "text/csv"}, mimetype="text/plain")
    resp.headers.add("Set-Cookie", "a=1")
    resp.headers.add("Set-Cookie", "b=2")
    parts = to_response_parts(resp)
    types = [v for k, v in parts.headers if k.lower() == "content-type"]
    assert types == ["text/csv"]
    assert [v for k, v in parts.headers if k.lower() == "set-cookie"] == ["a=1", "b=2"]


def test_framing_headers_from_user_code_are_dropped() -> None:
    parts = to_response_parts(func.HttpResponse("x", headers={"Content-Length": "999", "X-Ok": "1"}))
    assert [k for k, _ in parts.headers if k.lower() == "content-length"] == []
    assert ("X-Ok", "1") in parts.headers


def test_plain_str_is_200_text() -> None:
    parts = to_response_parts("hello")
    assert (parts.status, parts.body) == (200, b"hello")
    assert ("Content-Type", "text/plain; charset=utf-8") in parts.headers
    # JSON that is not an object with "body" stays plain text.
    assert to_response_parts('{"status": 500}').status == 200
    assert to_response_parts('{"status": 500}').body == b'{"status": 500}'


def test_str_json_object_with_body_is_a_response_object() -> None:
    parts = to_response_parts(json.dumps({"status": 418, "headers": {"X-Tea": "yes"}, "body": {"ok": True}}))
    assert parts.status == 418
    assert ("X-Tea", "yes") in parts.headers
    assert json.loads(parts.body) == {"ok": True}
    parts = to_response_parts(json.dumps({"statusCode": 201, "body": "made"}))
    assert (parts.status, parts.body) == (201, b"made")


def test_none_is_204() -> None:
    parts = to_response_parts(None)
    assert (parts.status, parts.body) == (204, b"")


@pytest.mark.parametrize("value", [b"bytes", 42, {"a": 1}])
def test_other_return_types_are_errors(value: object) -> None:
    with pytest.raises(UnsupportedResponseError):
        to_response_parts(value)


def test_undecodable_header_bytes_become_replacement_characters() -> None:
    # aiohttp keeps bytes that are not UTF-8 as lone surrogates; the app must get valid text.
    folded = fold_headers([("X-Raw", "a\udcff\udcfeb"), ("X-Utf8", "café"), ("X-Odd", "\ud800")])
    assert folded == {"x-raw": "a\ufffd\ufffdb", "x-utf8": "café", "x-odd": "?"}
    for value in folded.values():
        value.encode("utf-8")  # never raises
    assert readable("plain") == "plain"
