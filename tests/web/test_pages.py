"""The web pages in headless chromium, as a person uses them: enter the key once, submit a batch
picked from a blob prefix (and from the local root), watch it progress and complete, see a failed
item's reason and retry it, cancel a job, filter the work list, look up a session and a study,
and act as an operator on failed jobs and the mail dead letter. Screenshots of the work list, a
job page and the submit page are saved on the way (`tests/support/browser.py`)."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import os
import re
import uuid
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient
from playwright.sync_api import Browser, Page, expect

from shared.outbox import OutboxEntry, TableOutbox
from tests.support.azurite import Azurite
from tests.support.browser import SESSION_APP as APP
from tests.support.browser import open_with_key, screenshot, submit, upload
from tests.support.export_env import export_body
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

SOURCE = "acquired-web"
SLOW = 60_000  # ms: what a job may take to end here (2 cores shared with every server)


def files(prefix: str, n: int, size: int = 50_000) -> dict[str, bytes]:
    return {f"{prefix}/scan-{i:03d}.dcm": os.urandom(size + i) for i in range(n)}


def put_batch(dav: WebDavTestServer, items: list[str], project: str, **options: Any) -> dict[str, Any]:
    return {
        "source": {"kind": "blob", "container": SOURCE},
        "items": items,
        "destination": {"kind": "http_put", "base_url": dav.base_url, "url_template": "{base}/{project}/{path}",
                        "create_parents": True},
        "options": {"retry": {"first_retry_interval_ms": 300, "max_attempts": 3}, **options},
        "requested_by": "tech@example.com",
        "labels": {"project": project},
    }  # fmt: skip


def ended(api: httpx.Client, *job_ids: str) -> None:
    def done() -> bool:
        states = [api.get(f"/api/jobs/{j}").json()["state"] for j in job_ids]
        return all(s in ("succeeded", "failed", "cancelled") for s in states)

    wait_until(done, timeout=60, message=f"jobs {job_ids} to end")


def job_state(page: Page) -> Any:
    return page.locator("#job-state .badge")


def test_the_key_is_asked_once_per_tab_and_a_refused_key_says_so(page: Page, service: RuntimeProcess) -> None:
    page.goto("/api/ui")
    expect(page.locator("#notice")).to_contain_text("Enter the access key")
    key = page.get_by_label("Access key")
    expect(key).to_be_focused()  # the keyboard starts where the page needs it
    key.fill("not-a-key")
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_contain_text("refused the key (401 Unauthorized)")
    expect(key).to_be_visible()
    page.get_by_role("button", name="Change key").click()
    key.fill(service.function_key)
    page.keyboard.press("Enter")
    expect(page.locator("#message")).to_be_hidden()
    expect(page.locator("#jobs caption")).to_contain_text("shown")
    page.reload()
    expect(page.locator("#key-set")).to_be_visible()  # kept for the tab: not asked again
    expect(page.locator("#key-entry")).to_be_hidden()
    assert service.function_key not in page.url


def test_a_batch_picked_from_a_blob_prefix_progresses_and_completes(
    page: Page, service: RuntimeProcess, azurite: Azurite, dav: WebDavTestServer
) -> None:
    picked = files("visit-1", 3)
    folder = {f"visit-1/extra/more-{i}.dcm": os.urandom(30_000) for i in range(2)}
    upload(azurite, SOURCE, {**picked, **folder, "visit-2/other.dcm": b"not picked"})
    # The first file is refused twice (503) and retried: the page shows `retrying`, then the end.
    flaky = "visit-1/scan-000.dcm"
    dav.fail(f"/dav/web-a/{flaky}", 503, times=2, method="PUT")
    try:
        open_with_key(page, "/api/ui/submit", service.function_key)
        page.get_by_label("Container", exact=True).first.fill(SOURCE)
        page.get_by_label("Folder or name prefix").fill("visit-1/")
        page.get_by_role("button", name="List files").click()
        expect(page.locator("#listing-caption")).to_contain_text(
            "entries of container acquired-web, prefix visit-1/"
        )
        expect(page.locator("#listing tbody tr")).to_have_count(4)  # extra/ and three files
        for name in sorted(picked)[:2]:
            page.get_by_label(f"Pick {name}").check()
        page.get_by_role("button", name="Pick every file of folder visit-1/extra/").click()
        expect(page.locator("#selection-summary")).to_contain_text("4 files picked")
        page.get_by_label("Base URL").fill(dav.base_url)
        page.get_by_label("URL template").fill("{base}/{project}/{path}")
        page.get_by_label("Your e-mail").fill("tech@example.com")
        page.get_by_label("Labels").fill("project=web-a")
        page.get_by_label("Files at once").fill("2")
        screenshot(page, "submit-page")
        page.get_by_role("button", name="Submit the batch").click()
        page.wait_for_url(re.compile(r"/api/ui/jobs/[0-9a-f]{32}$"))
        job_id = page.url.rsplit("/", 1)[1]
        expect(page.locator("h1")).to_have_text(f"Job {job_id}")
        expect(job_state(page)).to_have_text("retrying", timeout=SLOW)
        expect(page.locator(f'#parts tr[data-part="{flaky}"]')).to_contain_text("503")
        expect(job_state(page)).to_have_text("succeeded", timeout=SLOW)
    finally:
        dav.clear_faults()
    expect(page.locator("#job-progress")).to_contain_text("4 of 4 items")
    rows = page.locator("#parts tbody tr")
    expect(rows).to_have_count(4)
    expect(page.locator("#parts .badge", has_text="succeeded")).to_have_count(4)
    expect(page.locator("#retry")).to_be_hidden()
    expect(page.locator("#cancel")).to_be_hidden()
    links = page.locator(f'#parts a[href^="{dav.base_url}/web-a/visit-1/"]')
    expect(links).to_have_count(4)  # each item's destination, as a link
    screenshot(page, "job-page")
    expected = {**{n: picked[n] for n in sorted(picked)[:2]}, **folder}
    for name, data in expected.items():
        assert dav.path(f"web-a/{name}").read_bytes() == data, name
    assert not dav.path("web-a/visit-1/scan-002.dcm").exists()  # listed, not picked


def test_a_failed_item_shows_its_reason_and_a_retry_reruns_it(
    page: Page, service: RuntimeProcess, azurite: Azurite, dav: WebDavTestServer, api: httpx.Client
) -> None:
    batch = files("visit-3", 3)
    upload(azurite, SOURCE, batch)
    denied = sorted(batch)[1]
    dav.fail(f"/dav/web-b/{denied}", 403, times=None, reason="this path is closed", method="PUT")
    try:
        job_id = submit(api, put_batch(dav, sorted(batch), "web-b"))
        open_with_key(page, f"/api/ui/jobs/{job_id}", service.function_key)
        expect(job_state(page)).to_have_text("failed", timeout=SLOW)
        row = page.locator(f'#parts tr[data-part="{denied}"]')
        expect(row).to_contain_text("this path is closed")
        expect(row).to_contain_text("403")
        expect(row.locator(".badge")).to_have_text("failed")
        expect(page.locator("#job-last-error")).to_contain_text(denied)
        page.get_by_label("Show", exact=True).select_option("failed")
        expect(page.locator("#parts tbody tr")).to_have_count(1)
        expect(page.locator("#cancel")).to_be_hidden()  # ended: nothing to cancel
        retry = page.get_by_role("button", name="Retry failed parts")
        expect(retry).to_be_visible()
    finally:
        dav.clear_faults()
    retry.click()
    expect(page.locator("#notice")).to_contain_text("Retry queued")
    expect(job_state(page)).to_have_text("succeeded", timeout=SLOW)
    page.get_by_label("Show", exact=True).select_option("all")
    expect(page.locator("#parts .badge", has_text="succeeded")).to_have_count(3)
    assert dav.path(f"web-b/{denied}").read_bytes() == batch[denied]


def test_a_running_job_is_cancelled_from_its_page(
    page: Page, service: RuntimeProcess, azurite: Azurite, dav: WebDavTestServer, api: httpx.Client
) -> None:
    batch = files("visit-4", 2)
    upload(azurite, SOURCE, batch)
    dav.fail("/dav/web-c/", 503, times=None, method="PUT")  # every PUT waits a minute to retry
    try:
        body = put_batch(
            dav, sorted(batch), "web-c", retry={"first_retry_interval_ms": 60_000, "max_attempts": 5}
        )
        job_id = submit(api, body)
        open_with_key(page, f"/api/ui/jobs/{job_id}", service.function_key)
        expect(job_state(page)).to_have_text("retrying", timeout=SLOW)
        expect(page.locator("#retry")).to_be_hidden()  # not failed: nothing to retry
        page.once("dialog", lambda dialog: dialog.accept())
        page.get_by_role("button", name="Cancel job").click()
        expect(page.locator("#notice")).to_contain_text("Cancel requested")
        expect(job_state(page)).to_have_text("cancelled", timeout=SLOW)
    finally:
        dav.clear_faults()
    expect(page.locator("#cancel")).to_be_hidden()
    expect(page.locator("#parts .badge", has_text="cancelled")).to_have_count(2)


def test_the_work_list_filters_and_refreshes_without_reloading(
    page: Page, service: RuntimeProcess, azurite: Azurite, api: httpx.Client
) -> None:
    upload(azurite, SOURCE, {"visit-5/ok.dcm": b"ok" * 1000})

    def batch(item: str, who: str) -> dict[str, Any]:  # each to its own folder: no two jobs share one
        to_blob = {"kind": "blob", "container": "delivered-web", "path_prefix": f"list/{who.split('@')[0]}"}
        return {"source": {"kind": "blob", "container": SOURCE}, "destination": to_blob, "items": [item],
                "requested_by": who}  # fmt: skip

    alice = submit(api, batch("visit-5/ok.dcm", "alice@example.com"))
    bob = submit(api, batch("visit-5/missing.dcm", "bob@example.com"))  # fails: no such blob
    ended(api, alice, bob)
    open_with_key(page, "/api/ui", service.function_key)
    page.evaluate("window.__sameDocument = true")
    rows = page.locator("#jobs tbody tr[data-job-id]")
    expect(page.locator(f'tr[data-job-id="{alice}"] .badge')).to_have_text("succeeded")
    expect(page.locator(f'tr[data-job-id="{bob}"] .badge')).to_have_text("failed")
    expect(page.locator(f'tr[data-job-id="{alice}"]')).to_contain_text("1 of 1 items")
    expect(page.locator(f'tr[data-job-id="{bob}"]')).to_contain_text("no such blob")

    page.get_by_label("State", exact=True).select_option("failed")
    expect(page.locator(f'tr[data-job-id="{alice}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-job-id="{bob}"]')).to_have_count(1)
    for state in rows.evaluate_all("rows => rows.map(r => r.dataset.state)"):
        assert state == "failed"
    assert "state=failed" in page.url  # the filters are in the address, to share or bookmark

    page.get_by_label("State", exact=True).select_option("")
    page.get_by_label("My e-mail (requested by)").fill("alice@example.com")
    page.get_by_label("Only mine").check()
    expect(page.locator(f'tr[data-job-id="{bob}"]')).to_have_count(0)
    expect(page.locator(f'tr[data-job-id="{alice}"]')).to_have_count(1)
    page.get_by_label("Only mine").uncheck()

    # Other modules' jobs share this Azurite: narrow to alice's, which are all batches.
    page.get_by_label("Only mine").check()
    page.get_by_label("Kind", exact=True).select_option("fhir-export")
    expect(page.locator("#jobs tbody")).to_contain_text("No job matches these filters.")
    page.get_by_label("Kind", exact=True).select_option("batch")
    expect(page.locator(f'tr[data-job-id="{alice}"]')).to_have_count(1)
    page.get_by_label("Kind", exact=True).select_option("")

    yesterday = (dt.datetime.now(dt.UTC).date() - dt.timedelta(days=1)).isoformat()
    page.get_by_label("Created to").fill(yesterday)
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("#jobs tbody")).to_contain_text("No job matches these filters.")
    page.get_by_label("Created to").fill("")
    page.get_by_label("Created from").fill(dt.datetime.now(dt.UTC).date().isoformat())
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator(f'tr[data-job-id="{alice}"]')).to_have_count(1)
    page.get_by_label("Only mine").uncheck()

    page.get_by_role("button", name="Clear filters").click()
    late = submit(api, batch("visit-5/ok.dcm", "carol@example.com"))
    expect(page.locator(f'tr[data-job-id="{late}"] .badge')).to_have_text("succeeded", timeout=30_000)
    assert page.evaluate("window.__sameDocument") is True  # it came without a reload
    screenshot(page, "work-list")
    page.locator(f'tr[data-job-id="{late}"] a').click()
    page.wait_for_url(f"**/api/ui/jobs/{late}")
    expect(page.locator("#key-set")).to_be_visible()  # the key went along


def test_files_picked_from_the_local_root_with_the_keyboard(
    page: Page, service: RuntimeProcess, azurite: Azurite
) -> None:
    open_with_key(page, "/api/ui/submit", service.function_key)
    local = page.get_by_label("Local folder of this workstation")
    expect(local).to_be_enabled()
    local.check()
    path = page.get_by_label("Folder under the local root")
    path.fill("lab")
    path.press("Enter")  # Enter in the folder field lists it
    expect(page.locator("#listing tbody tr")).to_have_count(2)  # notes.txt and run-1/, not the link out
    expect(page.locator("#listing")).not_to_contain_text("escape")
    page.get_by_role("button", name="Open folder lab/run-1/").click()
    expect(page.locator("#listing-caption")).to_contain_text("local folder lab/run-1")
    box = page.get_by_label("Pick lab/run-1/a.bin")
    box.focus()
    page.keyboard.press("Space")
    expect(box).to_be_checked()
    page.get_by_role("button", name="Up one folder").click()
    expect(page.locator("#listing-caption")).to_contain_text("local folder lab")
    page.get_by_role("button", name="Pick every file of folder lab/run-1/").click()
    expect(page.locator("#selection-summary")).to_contain_text("3 files picked")
    page.get_by_label("Blob container", exact=True).check()
    page.locator("#dst-container").fill("delivered-web")
    page.get_by_label("Folder in the container").fill("from-local")
    page.get_by_label("Your e-mail").fill("tech@example.com")
    page.get_by_role("button", name="Submit the batch").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/api/ui/jobs/[0-9a-f]{32}$"))
    expect(job_state(page)).to_have_text("succeeded", timeout=SLOW)
    with ContainerClient.from_connection_string(azurite.connection_string, "delivered-web") as c:
        names = sorted(b.name for b in c.list_blobs(name_starts_with="from-local/"))
    assert names == [
        "from-local/lab/run-1/a.bin",
        "from-local/lab/run-1/b.bin",
        "from-local/lab/run-1/sub/c.bin",
    ]


def test_the_apis_error_is_shown_with_its_field(
    page: Page, service: RuntimeProcess, azurite: Azurite
) -> None:
    upload(azurite, SOURCE, {"visit-6/a.dcm": b"a"})
    open_with_key(page, "/api/ui/submit", service.function_key)
    page.get_by_label("Container", exact=True).first.fill("No_Such")
    page.get_by_role("button", name="List files").click()
    message = page.locator("#message")
    expect(message).to_contain_text("container: must be 3-63 lowercase letters")
    expect(message).to_contain_text("(field: container)")
    expect(page.get_by_label("Container", exact=True).first).to_have_attribute("aria-invalid", "true")
    page.get_by_label("Container", exact=True).first.fill(SOURCE)
    page.get_by_label("Folder or name prefix").fill("visit-6/")
    page.get_by_role("button", name="List files").click()
    expect(message).to_be_hidden()
    page.get_by_label("Pick visit-6/a.dcm").check()
    page.get_by_label("Base URL").fill("http://127.0.0.1:9/dav")
    page.get_by_label("URL template").fill("{base}/{nope}/{path}")
    page.get_by_label("Your e-mail").fill("tech@example.com")
    page.get_by_role("button", name="Submit the batch").click()
    expect(message).to_contain_text("{nope} is neither an item value")
    expect(message).to_contain_text("(field: destination.url_template)")
    expect(message).to_contain_text("HTTP 400")
    template = page.get_by_label("URL template")
    expect(template).to_have_attribute("aria-invalid", "true")
    expect(template).to_be_focused()
    assert "/api/ui/submit" in page.url  # nothing was submitted


def test_an_exports_page_shows_its_types_and_output_files(
    page: Page, service: RuntimeProcess, fhir: FhirTestServer, api: httpx.Client
) -> None:
    body = export_body(fhir, ["Patient"], "exports", f"web/{uuid.uuid4().hex[:8]}")
    r = api.post("/api/exports", json=body)
    assert r.status_code == 202, r.text
    job_id = r.json()["id"]
    open_with_key(page, f"/api/ui/jobs/{job_id}", service.function_key)
    expect(job_state(page)).to_have_text("succeeded", timeout=SLOW)
    expect(page.locator("#parts-title")).to_have_text("Resource types")
    row = page.locator('#parts tr[data-part="Patient"]')
    expect(row.locator(".badge")).to_have_text("succeeded")
    expect(page.locator("#job-progress")).to_contain_text("1 of 1 types · 1 resources")
    link = page.locator("#output a", has_text="Patient-1.ndjson")
    expect(link).to_have_attribute(
        "href", re.compile(r"^http://127\.0\.0\.1:\d+/devstoreaccount1/exports/web/")
    )


def send_completed(azurite: Azurite, message: dict[str, Any]) -> None:
    with QueueClient.from_connection_string(azurite.connection_string, "session-completed") as q:
        with contextlib.suppress(ResourceExistsError):
            q.create_queue()
        q.send_message(base64.b64encode(json.dumps(message).encode()).decode())


def test_a_session_and_its_study_are_looked_up(
    page: Page, service: RuntimeProcess, azurite: Azurite, dav: WebDavTestServer, api: httpx.Client
) -> None:
    session = f"S-{uuid.uuid4().hex[:8]}"
    study = f"ST-{uuid.uuid4().hex[:6]}"
    upload(azurite, "generated-data", {f"{APP}/{session}/scan-1.dcm": os.urandom(20_000),
                                       f"{APP}/{session}/work.tmp": b"scratch"})  # fmt: skip
    send_completed(
        azurite, {"session_id": session, "app": APP, "study_id": study, "prefix": f"{APP}/{session}/"}
    )
    open_with_key(page, "/api/ui/sessions", service.function_key)
    page.get_by_label("Session id").fill("S-never-seen")
    page.get_by_role("button", name="Show session").click()
    expect(page.locator("#message")).to_contain_text("no export of session 'S-never-seen'")
    wait_until(
        lambda: api.get(f"/api/sessions/{session}").status_code == 200, timeout=60, message="session known"
    )
    page.get_by_label("Session id").fill(session)
    page.get_by_role("button", name="Show session").click()
    result = page.locator("#result")
    expect(result.locator("h2 .badge")).to_have_text("complete", timeout=SLOW)
    expect(result).to_contain_text("scan-1.dcm")
    skipped = result.locator("tr", has_text="work.tmp")
    expect(skipped.locator(".badge")).to_have_text("skipped")
    expect(skipped).to_contain_text("no-temp")  # the rule that excluded it
    expect(result.locator(f'a[href^="{dav.base_url}/{APP}/{session}/"]')).to_have_count(1)
    page.get_by_role("link", name=study).click()
    expect(page.locator("#result h2")).to_contain_text(f"Study {study}")
    expect(page.locator("#result tr", has_text=session).locator(".badge")).to_have_text("complete")
    assert f"study={study}" in page.url


def dead_mail(azurite: Azurite, job_id: str, subject: str) -> str:
    """A mail the SMTP server refused for good, straight into the service's outbox table."""
    outbox = TableOutbox.connect(azurite.connection_string)
    now = dt.datetime.now(dt.UTC)
    key = f"{job_id}:0:{uuid.uuid4().hex[:6]}"
    entry = OutboxEntry.new(key=key, job_id=job_id, to=["ops@example.com"], subject=subject,
                            message=f"Subject: {subject}\n\nbody\n", message_id=f"<{key}@test>", now=now)  # fmt: skip
    assert outbox.add(entry)
    assert outbox.claim(key, now) is not None
    outbox.mark_failed(key, now, "550 mailbox unavailable", permanent=True, schedule=[30])
    return key


def test_the_operator_sees_failures_first_and_acts_on_the_dead_letter(
    page: Page, service: RuntimeProcess, azurite: Azurite, api: httpx.Client
) -> None:
    upload(azurite, SOURCE, {"visit-7/other.dcm": b"o"})  # the container exists; late.dcm does not yet
    failed = submit(api, {"source": {"kind": "blob", "container": SOURCE}, "items": ["visit-7/late.dcm"],
                          "destination": {"kind": "blob", "container": "delivered-web"},
                          "requested_by": "ops@example.com"})  # fmt: skip
    ended(api, failed)
    resend = dead_mail(azurite, failed, "[bulk-export] batch failed (re-send me)")
    drop = dead_mail(azurite, failed, "[bulk-export] batch failed (drop me)")

    open_with_key(page, "/api/ui/operator", service.function_key)  # not the admin key
    expect(page.locator("#message")).to_contain_text("this page needs the admin key")
    expect(page.locator("#dead")).to_contain_text("needs the admin key")

    page.get_by_role("button", name="Change key").click()
    page.get_by_label("Access key").fill(service.master_key)
    page.get_by_role("button", name="Use key").click()
    row = page.locator(f'#failed tr[data-job-id="{failed}"]')
    expect(row).to_contain_text("visit-7/late.dcm")
    expect(row).to_contain_text("no such blob")
    expect(page.locator(f'#dead tr[data-key="{resend}"]')).to_contain_text("550 mailbox unavailable")
    page.get_by_role("button", name=f"Re-send mail {resend}").click()
    expect(page.locator("#notice")).to_contain_text(f"Mail {resend} queued again")
    expect(page.locator(f'#dead tr[data-key="{resend}"]')).to_have_count(0)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name=f"Delete mail {drop}").click()
    expect(page.locator(f'#dead tr[data-key="{drop}"]')).to_have_count(0)
    assert TableOutbox.connect(azurite.connection_string).get(drop) is None

    upload(azurite, SOURCE, {"visit-7/late.dcm": b"here now"})  # so the retry succeeds
    page.get_by_role("button", name=f"Retry job {failed}").click()
    expect(page.locator("#notice")).to_contain_text(f"Job {failed} queued again")
    expect(page.locator(f'#failed tr[data-job-id="{failed}"]')).to_have_count(0, timeout=30_000)


@pytest.mark.parametrize("path", ["/api/ui", "/api/ui/submit", "/api/ui/sessions", "/api/ui/operator"])
def test_pages_fit_a_phone(browser: Browser, service: RuntimeProcess, path: str) -> None:
    context = browser.new_context(base_url=service.base_url, viewport={"width": 375, "height": 740},
                                  is_mobile=True, has_touch=True)  # fmt: skip
    try:
        tab = context.new_page()
        open_with_key(tab, path, service.master_key)
        tab.wait_for_load_state("networkidle")
        tab.wait_for_timeout(500)  # the first refresh has drawn its rows
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 1, f"{path} is {overflow}px wider than the phone"
        if path == "/api/ui":
            screenshot(tab, "work-list-phone", for_docs=False)
    finally:
        context.close()
