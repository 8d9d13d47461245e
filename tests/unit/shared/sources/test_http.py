"""Pure helpers of the HTTP classification: Retry-After, OperationOutcome text, URL redaction."""

from __future__ import annotations

import json

import pytest

from shared.sources._http import outcome_text, parse_retry_after, redact_url
from tests.unit.shared.sources.fakes import FIXED_NOW, outcome

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("7", 7.0),
        (" 2.5 ", 2.5),
        ("-3", 11.0),  # not a valid delay (RFC 9110): the default
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),  # HTTP-date 30 s after FIXED_NOW
        ("Wed, 01 Jan 2025 11:00:00 GMT", 0.0),  # in the past: come back now
        ("Wednesday, 01-Jan-25 12:01:00 GMT", 60.0),  # obsolete RFC 850 form
        ("soon", 11.0),
        ("", 11.0),
        (None, 11.0),
    ],
)
def test_retry_after(header: str | None, seconds: float) -> None:
    assert parse_retry_after(header, lambda: FIXED_NOW, default=11.0) == pytest.approx(seconds)


def test_outcome_text_joins_diagnostics_and_details_without_repeats() -> None:
    body = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error",
                "code": "forbidden",
                "diagnostics": "scope missing",
                "details": {"text": "denied"},
            },
            {"severity": "error", "code": "forbidden", "diagnostics": "scope missing"},
        ],
    }
    assert outcome_text(json.dumps(body).encode()) == "scope missing; denied"


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"resourceType":"Patient"}', b"", b"\xff\xfe"])
def test_outcome_text_is_empty_for_anything_else(body: bytes) -> None:
    assert outcome_text(body) == ""


def test_outcome_text_is_bounded() -> None:
    assert len(outcome_text(json.dumps(outcome("x" * 10_000)).encode())) == 500


def test_redact_url_drops_credentials() -> None:
    url = "https://user:pw@h/fhir/Patient?_count=5&access_token=abc&ct=xyz"
    shown = redact_url(url)
    assert "pw" not in shown and "abc" not in shown and "user" not in shown
    assert shown == "https://h/fhir/Patient?_count=5&access_token=REDACTED&ct=xyz"


def test_redact_url_keeps_ordinary_urls_verbatim() -> None:
    url = "http://127.0.0.1:8080/fhir/Observation?_count=5&_lastUpdated=gt2024-01-01T00%3A00%3A00Z"
    assert redact_url(url) == url
