"""SmtpSender against a real SMTP server in-process (aiosmtpd on loopback): delivery of a
multipart message, 4xx/5xx classification, a refused, silent or hanging-up server, STARTTLS and
implicit TLS with a `trustme` CA, and a refused login whose error never shows the password."""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from shared.errors import PermanentError, TransientError
from shared.notify.base import MailSender, PartialDeliveryError
from shared.notify.smtp import SmtpSender
from tests.support.ports import free_port

pytestmark = pytest.mark.runtime

PASSWORD = "correct-horse-battery-staple"


class Recorder:
    """Accepts mail, except for recipients whose local part names the reply to give."""

    def __init__(self) -> None:
        self.received: list[Envelope] = []

    async def handle_RCPT(
        self, server: Any, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address.startswith("missing@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("greylist@"):
            return "451 4.7.1 greylisted, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:
        if any(a.startswith("busy@") for a in envelope.rcpt_tos):
            return "451 4.3.0 queue full, try again later"
        self.received.append(envelope)
        return "250 Message accepted"


def authenticate(
    server: Any, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == b"bulk"
        and auth_data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


def mail(*to: str) -> EmailMessage:
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = (
        "bulk-export@example.org",
        ", ".join(to),
        "batch done",
    )
    message["Message-ID"] = "<job-abc-0-report@example.org>"
    message.set_content("plain body ü")
    message.add_alternative("<p>html body &amp; more</p>", subtype="html")
    return message


@pytest.fixture
def plain() -> Iterator[tuple[Controller, Recorder]]:
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield controller, recorder
    finally:
        controller.stop()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    return context


def sender(controller: Controller, **kwargs: Any) -> SmtpSender:
    kwargs.setdefault("security", "none")
    return SmtpSender("127.0.0.1", controller.port, timeout=5, local_hostname="localhost", **kwargs)


def test_delivers_a_multipart_message(plain: tuple[Controller, Recorder]) -> None:
    controller, recorder = plain
    smtp = sender(controller)
    assert isinstance(smtp, MailSender)
    smtp.send(mail("analyst@example.com", "ops@example.org"))
    (envelope,) = recorder.received
    assert envelope.mail_from == "bulk-export@example.org"
    assert envelope.rcpt_tos == ["analyst@example.com", "ops@example.org"]
    assert isinstance(envelope.content, bytes)
    received = message_from_bytes(envelope.content, policy=policy.default)
    assert received.get_content_type() == "multipart/alternative"
    assert received["Message-ID"] == "<job-abc-0-report@example.org>"
    text, html = received.get_body(("plain",)), received.get_body(("html",))
    assert text is not None and "plain body ü" in text.get_content()
    assert html is not None and "html body &amp; more" in html.get_content()


def test_451_is_transient(plain: tuple[Controller, Recorder]) -> None:
    with pytest.raises(TransientError, match=r"451 4\.3\.0 queue full"):
        sender(plain[0]).send(mail("busy@example.org"))
    with pytest.raises(TransientError, match="greylist@example.org"):
        sender(plain[0]).send(mail("greylist@example.org"))


def test_550_is_permanent(plain: tuple[Controller, Recorder]) -> None:
    with pytest.raises(PermanentError, match=r"missing@example.org \(550 5\.1\.1 mailbox unavailable\)"):
        sender(plain[0]).send(mail("missing@example.org"))


def test_some_recipients_refused_is_a_partial_delivery(plain: tuple[Controller, Recorder]) -> None:
    controller, recorder = plain
    with pytest.raises(PartialDeliveryError) as raised:
        sender(controller).send(mail("ops@example.org", "missing@example.org"))
    assert raised.value.refused == {"missing@example.org": 550}
    assert recorder.received[0].rcpt_tos == ["ops@example.org"]


def test_connection_refused_is_transient() -> None:
    with pytest.raises(TransientError, match="unreachable: ConnectionRefusedError"):
        SmtpSender("127.0.0.1", free_port(), security="none", timeout=5).send(mail("a@example.org"))


def test_a_silent_server_times_out_transiently() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:  # listens, never greets
        smtp = SmtpSender("127.0.0.1", listener.getsockname()[1], security="none", timeout=0.3)
        with pytest.raises(TransientError, match="timed out"):  # smtplib: "unexpectedly closed"
            smtp.send(mail("a@example.org"))


def test_a_server_hanging_up_is_transient() -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:

        def hang_up() -> None:
            connection, _ = listener.accept()
            connection.close()

        thread = threading.Thread(target=hang_up, daemon=True)
        thread.start()
        with pytest.raises(TransientError, match="closed the connection"):
            SmtpSender("127.0.0.1", listener.getsockname()[1], security="none", timeout=5).send(
                mail("a@example.org")
            )
        thread.join(5)


def test_starttls_with_login(ca: trustme.CA) -> None:
    recorder = Recorder()
    controller = Controller(
        recorder, hostname="127.0.0.1", port=free_port(), tls_context=server_context(ca),
        require_starttls=True, authenticator=authenticate, auth_required=True,
    )  # fmt: skip
    controller.start()
    try:
        good = sender(
            controller,
            security="starttls",
            ssl_context=client_context(ca),
            username="bulk",
            password=PASSWORD,
        )
        good.send(mail("analyst@example.com"))
        assert len(recorder.received) == 1
        assert PASSWORD not in repr(good)
        bad = sender(
            controller,
            security="starttls",
            ssl_context=client_context(ca),
            username="bulk",
            password="wrong-" + PASSWORD,
        )
        with pytest.raises(PermanentError, match="535") as raised:
            bad.send(mail("analyst@example.com"))
        assert PASSWORD not in str(raised.value)
        # Untrusted certificate: refused for good, never downgraded to plain.
        with pytest.raises(PermanentError, match="certificate not trusted"):
            sender(controller, security="starttls").send(mail("analyst@example.com"))
        assert len(recorder.received) == 1
    finally:
        controller.stop()


def test_starttls_required_but_not_offered_is_permanent(plain: tuple[Controller, Recorder]) -> None:
    with pytest.raises(PermanentError, match="does not support"):
        sender(plain[0], security="starttls").send(mail("a@example.org"))
    assert plain[1].received == []


def test_implicit_tls(ca: trustme.CA) -> None:
    recorder = Recorder()
    controller = Controller(recorder, hostname="127.0.0.1", port=free_port(), ssl_context=server_context(ca))
    controller.start()
    try:
        sender(controller, security="tls", ssl_context=client_context(ca)).send(mail("analyst@example.com"))
        assert len(recorder.received) == 1
    finally:
        controller.stop()
