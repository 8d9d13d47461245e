"""Request URLs that httpx logs keep their query names but lose the values (tokens, SAS)."""

from __future__ import annotations

import logging

import httpx
import pytest

from shared.log_redaction import install, redact_query

pytestmark = pytest.mark.unit


def test_query_values_and_user_info_are_dropped() -> None:
    url = "https://user:pw@fhir.example.org/r4/Patient?_count=50&_getpages=abc&token=s3cr3t"
    assert redact_query(url) == "https://fhir.example.org/r4/Patient?_count=…&_getpages=…&token=…"
    assert redact_query("https://x.example.org/a") == "https://x.example.org/a"


def test_httpx_request_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    install()
    install()  # idempotent
    assert (
        sum(1 for f in logging.getLogger("httpx").filters if type(f).__name__ == "QueryRedactingFilter") == 1
    )
    transport = httpx.MockTransport(lambda r: httpx.Response(200))
    with caplog.at_level(logging.INFO, logger="httpx"), httpx.Client(transport=transport) as client:
        client.get("https://acct.blob.core.windows.net/c/b?sv=2024&sig=TOPSECRET")
        logging.getLogger("httpx").info(
            "HTTP Request: %s %s", "GET", httpx.URL("https://h.example.org/p?next=TOKEN")
        )
    text = caplog.text
    assert "TOPSECRET" not in text and "TOKEN" not in text
    assert "https://h.example.org/p?next=…" in text
