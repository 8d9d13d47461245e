"""Outcome messages built from real status documents (`shared.job_api.present`): subjects,
counts, failed items with reasons and the cap, escaping, the link, and Message-ID stability."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest

from shared.batching import part_name
from shared.errors import ValidationError
from shared.job_api import present
from shared.jobstore.base import JobView
from shared.notify.messages import (
    admin_alert,
    alert_due,
    check_recipient,
    message_id,
    report_due,
    submitter_report,
)

pytestmark = pytest.mark.unit

JOB = "3f2a9c1e5b2d4e6f8a0b1c2d3e4f5a6b"
SENDER = "bulk-export@example.org"
BASE = "https://bulk.example.org/"
TIMES = {
    "created": "2026-11-22T06:57:55Z",
    "started": "2026-11-22T06:57:55Z",
    "finished": "2026-11-22T07:01:02Z",
}


def export_status(state: str, types: dict[str, dict[str, Any]], error: str | None = None) -> dict[str, Any]:
    record = {"id": JOB, "kind": "fhir-export", "state": state, "requested_by": "analyst@example.com",
              "labels": {"project": "cohort-a"}, "request": {"source": {"types": list(types)}},
              "last_error": error, **TIMES}  # fmt: skip
    return present(JobView(record, parts=types))


def batch_status(
    state: str, items: list[tuple[str, str, str | None]], partial: bool = False
) -> dict[str, Any]:
    record = {"id": JOB, "kind": "batch", "state": state, "requested_by": "tech@example.com",
              "labels": {}, "request": {}, "items": [name for name, _, _ in items], **TIMES}  # fmt: skip
    parts = {part_name(i): {"index": i, "item": name, "state": s, "bytes_done": 1000 if s == "succeeded" else 0,
                            "bytes_total": 1000, "last_error": err}
             for i, (name, s, err) in enumerate(items)}  # fmt: skip
    return present(JobView(record, parts=parts))


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, html = message.get_body(("plain",)), message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())


def test_export_success_report() -> None:
    status = export_status("succeeded", {
        "Patient": {"state": "succeeded", "resources": 200, "files": [{"name": "Patient-1.ndjson"}], "bytes": 59846},
        "Observation": {"state": "succeeded", "resources": 1000, "files": [{}, {}], "bytes": 3 * 1024 * 1024},
    })  # fmt: skip
    message = submitter_report(status, run=0, sender=SENDER, base_url=BASE)
    assert message["Subject"] == "[bulk-export] export 3f2a9c1e… succeeded: 1,200 resources in 3 files"
    assert message["To"] == "analyst@example.com" and message["From"] == SENDER
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Sun, 22 Nov 2026 07:01:02 +0000"
    text, html = bodies(message)
    assert "Resources: 1,200\nFiles:     3\n" in text
    assert "3.1 MiB (3,205,574 bytes)" in text  # 59846 + 3 MiB
    assert "Observation: succeeded, 1,000 resources, 2 files, 3.0 MiB (3,145,728 bytes)" in text
    assert "Labels:    project=cohort-a" in text
    assert f"Status: https://bulk.example.org/api/jobs/{JOB}" in text
    assert f'href="https://bulk.example.org/api/jobs/{JOB}"' in html
    assert "<img" not in html and "<style" not in html and "<script" not in html
    assert not alert_due(status)


def test_export_with_a_failed_type_partially_failed() -> None:
    status = export_status("failed", {
        "Patient": {"state": "succeeded", "resources": 200, "files": [{}], "bytes": 100},
        "Observation": {"state": "failed", "resources": 0, "files": [], "bytes": 0},
    }, error="Observation: GET http://fhir.example/Observation answered 500")  # fmt: skip
    message = admin_alert(status, ["ops@example.org", "oncall@example.org"], run=1, sender=SENDER)
    assert message["Subject"] == "[bulk-export] alert: export 3f2a9c1e… partially failed: 1 of 2 types failed"
    assert message["To"] == "ops@example.org, oncall@example.org"
    text, _ = bodies(message)
    assert "of analyst@example.com" in text and "(run 2)" in text
    assert "Reason: Observation: GET http://fhir.example/Observation answered 500" in text
    assert "Status:" not in text  # no PUBLIC_BASE_URL, no link
    assert alert_due(status)


def test_batch_with_failed_items_lists_them_with_reasons_and_caps_the_list() -> None:
    items: list[tuple[str, str, str | None]] = [(f"scans/ok-{i}.dcm", "succeeded", None) for i in range(45)]
    items += [(f"scans/bad-{i}.dcm", "failed", f"PUT answered 507 for item {i}") for i in range(4)]
    items += [("scans/empty.dcm", "skipped", "source file is empty")]
    status = batch_status("failed", items)
    message = submitter_report(status, run=0, sender=SENDER, base_url=BASE, max_listed=3)
    assert message["Subject"] == "[bulk-export] batch 3f2a9c1e… failed: 4 of 50 files failed"
    text, html = bodies(message)
    flat = " ".join(text.split())
    assert "Files: 45 of 50 moved Failed: 4 Skipped: 1 Moved: 43.9 KiB (45,000 bytes)" in flat
    assert "  - scans/bad-0.dcm (failed): PUT answered 507 for item 0" in text
    assert "scans/bad-2.dcm" in text and "scans/bad-3.dcm" not in text
    assert "… and 2 more (see the job's status)" in text
    assert "PUT answered 507 for item 1" in html
    assert alert_due(status)


def test_batch_success_and_partial_success_subjects() -> None:
    ok = batch_status("succeeded", [(f"f{i}", "succeeded", None) for i in range(50)])
    assert submitter_report(ok, run=0, sender=SENDER)["Subject"].endswith(
        "batch 3f2a9c1e… succeeded: 50 of 50 files"
    )
    partial = batch_status("succeeded", [("a", "succeeded", None), ("b", "failed", "gone")])
    message = submitter_report(partial, run=0, sender=SENDER)
    assert message["Subject"].endswith("partially failed: 1 of 2 files failed")
    assert alert_due(partial) and not alert_due(ok)


def test_cancelled_job() -> None:
    status = batch_status(
        "cancelled", [("a", "succeeded", None), ("b", "cancelled", None), ("c", "cancelled", None)]
    )
    message = submitter_report(status, run=0, sender=SENDER)
    assert message["Subject"] == "[bulk-export] batch 3f2a9c1e… cancelled: 1 of 3 files moved"
    text, _ = bodies(message)
    assert "Cancelled: 2\n" in text and "did not move" not in text  # cancelled items are not failures
    export = export_status("cancelled", {"Patient": {"state": "cancelled"}})
    assert (
        submitter_report(export, run=0, sender=SENDER)["Subject"]
        == "[bulk-export] export 3f2a9c1e… cancelled"
    )
    assert not alert_due(status) and not alert_due(export)


def test_hostile_item_names_are_escaped_and_kept_on_one_line() -> None:
    hostile = '<img src="https://evil.example/x.png" onerror="alert(1)">\r\nSubject: hi'
    status = batch_status("failed", [(hostile, "failed", "<b>bold</b> & <script>x()</script>")])
    status["labels"] = {"who": "<a href='https://phish.example'>click</a>"}
    text, html = bodies(submitter_report(status, run=0, sender=SENDER))
    assert "<img" not in html and "<script" not in html and "<a href='https://phish" not in html
    assert "&lt;img src=&quot;https://evil.example/x.png&quot;" in html
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;script&gt;" in html
    assert "<a " not in html  # no PUBLIC_BASE_URL: no link at all, and none from user text
    line = next(line for line in text.splitlines() if "evil.example" in line)
    assert line.endswith("Subject: hi (failed): <b>bold</b> & <script>x()</script>")  # one line


def test_message_survives_a_round_trip_through_bytes() -> None:
    status = batch_status("failed", [("ünïcode-name.dcm", "failed", "disk full")])
    message = admin_alert(status, ["ops@example.org"], run=0, sender=SENDER, base_url=BASE)
    parsed = message_from_bytes(message.as_bytes(), policy=policy.default)
    assert parsed.is_multipart() and parsed.get_content_type() == "multipart/alternative"
    text = parsed.get_body(("plain",))
    assert text is not None and "ünïcode-name.dcm" in text.get_content()


def test_message_id_is_stable_per_job_run_and_role() -> None:
    status = batch_status("failed", [("a", "failed", "x")])
    first = submitter_report(status, run=0, sender=SENDER)["Message-ID"]
    assert first == f"<job-{JOB}-0-report@example.org>"
    assert submitter_report(status, run=0, sender=SENDER)["Message-ID"] == first
    assert submitter_report(status, run=1, sender=SENDER)["Message-ID"] == f"<job-{JOB}-1-report@example.org>"
    assert admin_alert(status, ["ops@example.org"], run=0, sender=SENDER)["Message-ID"] == (
        f"<job-{JOB}-0-alert@example.org>"
    )
    with pytest.raises(ValueError):
        message_id("bad id>", 0, "report", "example.org")


def test_report_due_follows_mail_on_success() -> None:
    ok = batch_status("succeeded", [("a", "succeeded", None)])
    bad = batch_status("failed", [("a", "failed", "x")])
    assert report_due(ok, {"batch"}) and not report_due(ok, {"fhir-export"})
    assert report_due(bad, set())
    running = dict(ok, state="running")
    assert not report_due(running, {"batch"})
    with pytest.raises(ValueError, match="has not ended"):
        submitter_report(running, run=0, sender=SENDER)


@pytest.mark.parametrize(
    "address",
    ["a@b", "nobody", "a@b.org, c@d.org", "Eve <eve@x.org>", '"x"@y.org', "a@b.org\r\nBcc: c@d.org"],
)
def test_check_recipient_refuses_anything_but_one_plain_mailbox(address: str) -> None:
    with pytest.raises(ValidationError) as raised:
        check_recipient(address, "requested_by")
    assert raised.value.field == "requested_by"


def test_check_recipient_accepts_plain_addresses() -> None:
    assert check_recipient("first.last+tag@sub.example.org") == "first.last+tag@sub.example.org"


def test_a_failed_session_alerts_the_admins_with_its_failed_items() -> None:
    record = {"id": JOB, "kind": "session", "state": "failed", "requested_by": "auto-export@sessions.invalid",
              "labels": {"app": "recon", "session": "S-1", "study": "ST-9"},
              "request": {"app": "recon", "session_id": "S-1"}, **TIMES}  # fmt: skip
    parts = {"a.dcm": {"item": "a.dcm", "state": "succeeded", "bytes_done": 10, "bytes_total": 10},
             "b.dcm": {"item": "b.dcm", "state": "failed", "last_error": "PUT answered 403: closed"},
             "c.tmp": {"item": "c.tmp", "state": "skipped", "rule": "no-temp", "last_error": "excluded by rule no-temp"}}  # fmt: skip
    status = present(JobView(record, parts=parts))
    assert alert_due(status)
    message = admin_alert(status, ("ops@example.org",), run=0, sender=SENDER, base_url=BASE)
    assert "session 3f2a9c1e… failed: 1 of 3 files failed" in message["Subject"]
    text, _ = bodies(message)
    assert "b.dcm (failed): PUT answered 403: closed" in text
    assert "c.tmp (skipped): excluded by rule no-temp" in text
