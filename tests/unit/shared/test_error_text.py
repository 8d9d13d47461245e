"""`readable`: the message of an error as a person should read it, from every layout we meet."""

from __future__ import annotations

import pytest

from shared.error_text import readable

pytestmark = pytest.mark.unit

MESSAGE = "metadata http://127.0.0.1:9/fhir/metadata: connection failed (ConnectError)"
TRACEBACK = 'Traceback (most recent call last):\n  File "/app/shared/exporting.py", line 84, in prepare\n'


@pytest.mark.parametrize(
    "text",
    [
        # the SDK's "{Reason} \n {Details}" from the self-hosted runtime (and DTFx in .NET)
        f"Activity function 'export_prepare' failed: TransientError: {MESSAGE} \n {TRACEBACK}",
        # the Azure Python worker's reason layout
        f"Activity function 'export_prepare' failed:  Result: Failure\nException: shared.errors.TransientError: "
        f'{MESSAGE}\nStack:   File "/home/site/wwwroot/shared/exporting.py", line 84 \n {TRACEBACK}',
        f"shared.errors.TransientError: {MESSAGE}",
        MESSAGE,
    ],
    ids=["selfhost", "azure-worker", "qualified", "plain"],
)
def test_keeps_only_the_message(text: str) -> None:
    assert readable(text) == MESSAGE


def test_a_terminated_child_says_so() -> None:
    text = "Sub-orchestration 'export_type' was terminated: \"bad type\""
    assert readable(text) == 'the work was terminated: "bad type"'


def test_credentials_in_urls_are_removed() -> None:
    text = "page https://user:pw@fhir.test/Patient?ct=2&access_token=abc: HTTP 500"
    assert readable(text) == "page https://fhir.test/Patient?ct=2&access_token=REDACTED: HTTP 500"


def test_long_texts_are_cut_and_whitespace_folded() -> None:
    out = readable("x  " * 1000, limit=50)
    assert len(out) == 50 and out.endswith("…") and "  " not in out
    assert readable("") == "unknown error"
    assert readable(ValueError("boom")) == "boom"
