"""Batch requests: parsing with field paths, secrets taken out, and the batch's pure decisions."""

from __future__ import annotations

from typing import Any

import pytest

from shared.batch_contracts import BatchRequest, item_values, parse_batch_request
from shared.batch_tasks import Counts, ItemOutcome, final_state
from shared.errors import ValidationError
from shared.jobs import JobState

pytestmark = pytest.mark.unit


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "source": {"kind": "blob", "container": "acquired", "secret": "UseDevelopmentStorage=true"},
        "items": ["s1/a.dcm", "s1/b.dcm"],
        "destination": {
            "kind": "http_put",
            "base_url": "https://partner.example/api",
            "url_template": "{base}/{path}",
            "auth": "bearer",
            "secret": "tok-123",
        },  # fmt: skip
        "requested_by": "tech@example.com",
    }
    b.update(changes)
    return b


def test_secrets_are_taken_out_and_named_per_job() -> None:
    request, items, secrets = parse_batch_request(body(), job_id="job1", default_container="exports")
    assert items == ("s1/a.dcm", "s1/b.dcm") and request.item_count == 2
    assert set(secrets.values()) == {"UseDevelopmentStorage=true", "tok-123"}
    assert request.source.secret_name in secrets and request.destination.secret_name in secrets
    stored = request.to_dict()
    assert "tok-123" not in str(stored) and "UseDevelopmentStorage" not in str(stored)
    assert BatchRequest.from_dict(stored) == request


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"items": []}, "items"),
        ({"items": ["a", "b", "a"]}, "items[2]"),
        ({"items": "a"}, "items"),
        ({"source": {"kind": "blob"}}, "source.container"),
        ({"source": {"kind": "s3"}}, "source.kind"),
        (
            {
                "destination": {
                    "kind": "http_put",
                    "base_url": "https://x.example",
                    "url_template": "{base}/{path}",
                    "auth": "basic",
                }
            },
            "destination.secret",
        ),  # fmt: skip
        ({"destination": {"kind": "blob", "container": "Bad_Name"}}, "destination.container"),
        ({"options": {"concurrency": 99}}, "options.concurrency"),
        ({"options": {"partial_failure": "maybe"}}, "options.partial_failure"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_bad_requests_name_the_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as caught:
        parse_batch_request(body(**changes), job_id="job1", default_container="exports")
    assert caught.value.field == field


def test_item_values_for_templates() -> None:
    assert item_values("s1/a.dcm", 3, "blob") == {"path": "s1/a.dcm", "name": "a.dcm", "index": "3"}
    assert item_values("https://h.example/x/y.dcm?sig=1", 0, "url")["path"] == "x/y.dcm"


def test_final_state() -> None:
    some_failed = Counts(succeeded=3, failed=1)
    assert final_state(some_failed, cancelled=False, partial_failure="fail") is JobState.FAILED
    assert final_state(some_failed, cancelled=False, partial_failure="succeed") is JobState.SUCCEEDED
    assert final_state(Counts(failed=2), cancelled=False, partial_failure="succeed") is JobState.FAILED
    assert final_state(some_failed, cancelled=True, partial_failure="fail") is JobState.CANCELLED
    assert final_state(Counts(succeeded=1), cancelled=False, partial_failure="fail") is JobState.SUCCEEDED
    counts = (
        Counts()
        .add(ItemOutcome(index=0, state="succeeded", bytes=10))
        .add(ItemOutcome(index=1, state="failed"))
        .add(ItemOutcome(index=2, state="cancelled"))
    )
    assert counts == Counts(succeeded=1, failed=1, cancelled=1, bytes=10)
    assert Counts.from_dict(counts.to_dict()) == counts
