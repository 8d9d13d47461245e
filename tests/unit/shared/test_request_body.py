"""Request bodies: every hostile body is a ValidationError naming the problem, never a crash."""

from __future__ import annotations

import pytest

from shared.errors import ValidationError
from shared.request_body import MAX_DEPTH, PayloadTooLarge, parse_json

pytestmark = pytest.mark.unit


def refused(raw: bytes, **kwargs: object) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_json(raw, **kwargs)  # type: ignore[arg-type]
    return caught.value


def test_a_plain_object_is_decoded() -> None:
    assert parse_json(b'{"a": [1, 2.5, "x", null, true]}') == {"a": [1, 2.5, "x", None, True]}


def test_an_empty_body_is_refused_unless_the_route_takes_none() -> None:
    assert refused(b"  ").field == "body"
    assert parse_json(b"", empty=None) is None
    assert parse_json(None, empty={}) == {}


def test_nesting_5000_deep_is_refused_before_the_parser_recurses() -> None:
    error = refused(b"[" * 5000 + b"]" * 5000)
    assert "deeper than" in error.detail
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH) is not None


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    assert parse_json(('{"a": "' + "[" * 100 + '\\"{"}').encode()) == {"a": "[" * 100 + '"{'}


def test_bytes_that_are_not_utf8_are_refused_with_their_offset() -> None:
    error = refused(b'{"a": "\xff"}')
    assert error.field == "body" and "not UTF-8 (byte 7)" in error.detail


def test_a_lone_surrogate_is_refused_naming_the_field() -> None:
    assert refused(b'{"requested_by": "\\ud800"}').field == "requested_by"
    assert refused(b'{"items": ["ok", "\\udfff"]}').field == "items[1]"
    assert refused(b'{"\\ud800": 1}').field == "body"


def test_numbers_beyond_64_bits_and_non_finite_ones_are_refused() -> None:
    assert refused(b'{"top": 1000000000000000000000000000000}').field == "top"
    assert refused(b'{"a": 1e400}').field == "a"
    assert "NaN" in refused(b'{"a": NaN}').detail
    assert refused(b'{"a": Infinity}').field == "body"
    assert refused(b'{"a": ' + b"9" * 5000 + b"}").field == "body"  # longer than int() converts


def test_duplicate_keys_are_refused() -> None:
    assert "appears twice" in refused(b'{"a": 1, "a": 2}').detail


def test_malformed_json_names_line_and_column() -> None:
    assert "line 1 column" in refused(b'{"a": }').detail


def test_a_body_over_the_limit_is_too_large() -> None:
    with pytest.raises(PayloadTooLarge):
        parse_json(b"[" + b"1," * 100 + b"1]", max_bytes=50)
