"""End to end: outcome mail (seed 001). A job that ends mails its submitter; a failure alerts the
admins; while the SMTP server refuses connections the mail waits and arrives once, when it is
back; a 5xx makes the mail dead, visible to an operator who re-sends it. A real SMTP server
(aiosmtpd on loopback) and the runtime on function_app.py; the notifier timer is run through the
host's admin API instead of waiting for its schedule."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from azure.storage.blob import ContainerClient

from tests.support.azurite import Azurite
from tests.support.export_env import TERMINAL, ExportClient, export_body, start_service
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.ports import free_port
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ADMIN = "ops@example.com"


class Mailbox:
    """Accepts mail, or answers `reply` (e.g. "550 ...") to DATA while it is set; with
    `stall_rcpt`, keeps a client waiting at RCPT (before any message is accepted)."""

    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.reply: str | None = None
        self.stall_rcpt = 0.0
        self.lock = threading.Lock()

    async def handle_RCPT(  # noqa: N802
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.stall_rcpt:
            await asyncio.sleep(self.stall_rcpt)
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        if self.reply:
            return self.reply
        with self.lock:
            data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
            self.received.append(message_from_bytes(data, _class=EmailMessage, policy=policy.default))  # type: ignore[arg-type]
        return "250 accepted"

    def to(self, address: str) -> list[EmailMessage]:
        with self.lock:
            return [m for m in self.received if address in str(m["To"])]


class Smtp:
    """The SMTP server on a fixed port; stopped and started again like a real one (a new
    aiosmtpd controller each start: a stopped one cannot restart)."""

    def __init__(self, box: Mailbox) -> None:
        self.box, self.port = box, free_port()
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.box, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture(scope="module")
def smtp() -> Iterator[tuple[Mailbox, Smtp]]:
    server = Smtp(Mailbox())
    server.start()
    yield server.box, server
    server.stop()


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 30, "Observation": 20}) as server:
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite,
    fhir: FhirTestServer,
    smtp: tuple[Mailbox, Smtp],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RuntimeProcess]:
    _, server = smtp
    mail = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none",
            "MAIL_FROM": "bulk-export@example.org", "MAIL_ADMINS": ADMIN, "PUBLIC_BASE_URL": "https://exports.example.org",
            "MAIL_RETRY_SCHEDULE": ",".join(["1"] * 20), "MAIL_CLAIM_TIMEOUT_S": "3"}  # fmt: skip
    rt = start_service(azurite, fhir, Path(tmp_path_factory.mktemp("mail")), **mail)
    try:
        yield rt
    finally:
        rt.stop()


def run_notifier(rt: RuntimeProcess) -> None:
    r = httpx.post(rt.url("admin/functions/send_outcome_mail"), json={"input": ""},
                   headers={"x-functions-key": rt.master_key}, timeout=30)  # fmt: skip
    assert r.status_code == 202, r.text


def notifications(rt: RuntimeProcess, state: str) -> list[dict[str, Any]]:
    # limit 500: other tests' mails in the same state come first (oldest first, 50 by default).
    r = httpx.get(rt.url("api/notifications"), params={"state": state, "limit": "500"},
                  headers={"x-functions-key": rt.master_key},
                  timeout=30)  # fmt: skip
    assert r.status_code == 200, r.text
    return list(r.json()["notifications"])


def delivered(
    box: Mailbox, rt: RuntimeProcess, address: str, count: int = 1, about: str = ""
) -> list[EmailMessage]:
    """The mails to `address` (whose subject names `about`, e.g. a job id), once `count` came:
    other tests of the module mail the same address."""

    def arrived() -> list[EmailMessage] | None:
        run_notifier(rt)
        found = [m for m in box.to(address) if about in str(m["Subject"])]
        return found if len(found) >= count else None

    return wait_until(arrived, timeout=60, interval=1.5, message=f"mail to {address}")


def body_text(message: EmailMessage, subtype: str) -> str:
    part = message.get_body(preferencelist=(subtype,))
    assert part is not None
    return str(part.get_content())


def test_a_finished_export_mails_its_submitter_once(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    box, _ = smtp
    body = export_body(fhir, ["Patient", "Observation"], "mail", "ok")
    body["requested_by"] = "analyst@example.com"
    job = client.start(body)
    assert client.wait(job)["state"] == "succeeded"
    [mail] = delivered(box, service, "analyst@example.com")
    assert "succeeded" in mail["Subject"] and job[:8] in mail["Subject"]
    assert mail["Message-ID"] == f"<job-{job}-0-report@example.org>"
    text, html = body_text(mail, "plain"), body_text(mail, "html")
    assert "50" in text and f"https://exports.example.org/api/jobs/{job}" in text
    assert "<img" not in html and "http://" not in html.replace("https://exports.example.org", "")
    run_notifier(service)
    assert len(box.to("analyst@example.com")) == 1  # once, however often the notifier runs
    assert not box.to(ADMIN)  # nothing failed: no alert


def test_a_failed_export_mails_the_submitter_and_alerts_the_admins(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    box, _ = smtp
    fhir.faults.add(Fault(kind="status", status=403, diagnostics="Observation is off limits",
                          resource_type="Observation", times=None))  # fmt: skip
    try:
        body = export_body(
            fhir,
            ["Patient", "Observation"],
            "mail",
            "bad",
            retry={"first_retry_interval_ms": 100, "max_attempts": 1},
        )
        body["requested_by"] = "unlucky@example.com"
        job = client.start(body)
        assert client.wait(job)["state"] == "failed"
    finally:
        fhir.faults.clear()
    [report] = delivered(box, service, "unlucky@example.com")
    assert "failed" in report["Subject"] and "Observation is off limits" in body_text(report, "plain")
    alerts = delivered(box, service, ADMIN, about=job[:8])
    assert len(alerts) == 1 and "alert" in alerts[0]["Subject"]


def test_mail_waits_while_the_server_is_down_and_arrives_once(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    box, server = smtp
    server.stop()
    try:
        body = export_body(fhir, ["Patient"], "mail", "down")
        body["requested_by"] = "patient-person@example.com"
        job = client.start(body)
        assert client.wait(job)["state"] == "succeeded"

        def refused_twice() -> list[dict[str, Any]] | None:
            run_notifier(service)  # each run meets a refused connection (runs are asynchronous)
            found = [
                n for n in notifications(service, "pending") if n["job_id"] == job and n["attempts"] >= 2
            ]
            return found or None

        [waiting] = wait_until(refused_twice, timeout=30, interval=1.5, message="two refused attempts")
        assert "connection" in (waiting["last_error"] or "").lower(), waiting
    finally:
        server.start()
    mails = delivered(box, service, "patient-person@example.com")
    run_notifier(service)
    assert len(box.to("patient-person@example.com")) == len(mails) == 1


def test_a_refused_mail_is_dead_visible_and_an_operator_resends_it(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    box, _ = smtp
    box.reply = "550 5.7.1 relaying denied"
    try:
        body = export_body(fhir, ["Patient"], "mail", "dead")
        body["requested_by"] = "refused@example.com"
        job = client.start(body)
        assert client.wait(job)["state"] == "succeeded"

        def dead() -> list[dict[str, Any]] | None:
            run_notifier(service)
            found = [n for n in notifications(service, "dead") if n["job_id"] == job]
            return found or None

        [entry] = wait_until(dead, timeout=30, interval=1, message="the refused mail to be dead")
        assert "550" in entry["last_error"] and entry["to"] == ["refused@example.com"]
    finally:
        box.reply = None
    key = entry["key"]
    r = httpx.post(
        service.url(f"api/notifications/{key}/retry"),
        headers={"x-functions-key": service.master_key},
        timeout=30,
    )
    assert r.status_code == 202, r.text
    assert len(delivered(box, service, "refused@example.com")) == 1
    assert httpx.get(service.url("api/notifications"), headers={"x-functions-key": client.rt.function_key},
                     timeout=30).status_code == 401  # fmt: skip
    assert httpx.get(service.url("api/notifications"), params={"state": "nope"},
                     headers={"x-functions-key": service.master_key}, timeout=30).status_code == 400  # fmt: skip


def test_a_batch_with_a_failed_file_mails_both(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], azurite: Azurite, service: RuntimeProcess
) -> None:
    box, _ = smtp
    with ContainerClient.from_connection_string(azurite.connection_string, "acquired-mail") as c:
        c.exists() or c.create_container()
        c.upload_blob("s/a.dcm", os.urandom(1000), overwrite=True)
    body = {"source": {"kind": "blob", "container": "acquired-mail"}, "items": ["s/a.dcm", "s/missing.dcm"],
            "destination": {"kind": "blob", "container": "delivered-mail"}, "requested_by": "tech@example.com"}  # fmt: skip
    r = client.http.post(client.rt.url("api/batches"), json=body)
    assert r.status_code == 202, r.text
    job = r.json()["id"]
    wait_until(lambda: client.http.get(client.rt.url(f"api/batches/{job}")).json()["state"] in TERMINAL, timeout=60,
               message="the batch to end")  # fmt: skip
    [report] = delivered(box, service, "tech@example.com", about=job[:8])
    assert "1 of 2 files failed" in report["Subject"] and "s/missing.dcm" in body_text(report, "plain")
    assert delivered(box, service, ADMIN, about=job[:8])


@pytest.mark.slow
def test_kill_9_between_claiming_and_sending_delivers_once(
    azurite: Azurite, fhir: FhirTestServer, smtp: tuple[Mailbox, Smtp], tmp_path: Path
) -> None:
    box, server = smtp
    mail = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(server.port), "SMTP_SECURITY": "none",
            "MAIL_FROM": "bulk-export@example.org", "MAIL_RETRY_SCHEDULE": "1", "MAIL_CLAIM_TIMEOUT_S": "3"}  # fmt: skip
    rt = start_service(azurite, fhir, tmp_path, **mail)
    client = ExportClient(rt)
    try:
        body = export_body(fhir, ["Patient"], "mail", "crash")
        body["requested_by"] = "crash-test@example.com"
        job = client.start(body)
        assert client.wait(job)["state"] == "succeeded"
        box.stall_rcpt = 8.0  # the notifier claims the mail, then waits at RCPT: kill it there
        run_notifier(rt)
        wait_until(lambda: [n for n in notifications(rt, "sending") if n["job_id"] == job], timeout=20,
                   message="the mail claimed")  # fmt: skip
        rt.kill()
        box.stall_rcpt = 0.0
        rt.start()
        assert len(delivered(box, rt, "crash-test@example.com")) == 1
        run_notifier(rt)
        assert len(box.to("crash-test@example.com")) == 1
    finally:
        box.stall_rcpt = 0.0
        client.close()
        rt.stop()


def test_a_4xx_reply_is_retried_and_the_mail_arrives_once(
    client: ExportClient, smtp: tuple[Mailbox, Smtp], fhir: FhirTestServer, service: RuntimeProcess
) -> None:
    box, _ = smtp
    box.reply = "451 4.3.0 queue full, try again later"
    try:
        body = export_body(fhir, ["Patient"], "mail", "busy")
        body["requested_by"] = "busy-relay@example.com"
        job = client.start(body)
        assert client.wait(job)["state"] == "succeeded"

        def deferred() -> list[dict[str, Any]] | None:
            run_notifier(service)
            # With a 1 s retry schedule the entry is claimed ("sending") about as often as it waits.
            entries = notifications(service, "pending") + notifications(service, "sending")
            found = [n for n in entries if n["job_id"] == job and n["attempts"] >= 1]
            return found[:1] or None

        [entry] = wait_until(deferred, timeout=60, interval=1.5, message="the mail deferred by a 451")
        assert "451" in (entry["last_error"] or ""), entry
    finally:
        box.reply = None
    assert len(delivered(box, service, "busy-relay@example.com")) == 1
