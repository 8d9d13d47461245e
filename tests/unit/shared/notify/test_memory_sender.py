"""MemorySender: records what it accepts; fails the next N sends as told."""

from __future__ import annotations

from email.message import EmailMessage

import pytest

from shared.errors import PermanentError, TransientError
from shared.notify.base import MailSender
from shared.notify.memory import MemorySender

pytestmark = pytest.mark.unit


def mail(to: str) -> EmailMessage:
    message = EmailMessage()
    message["To"], message["From"], message["Subject"] = to, "bulk@example.org", "hi"
    message.set_content("hello")
    return message


def test_records_and_fails_as_told() -> None:
    sender = MemorySender()
    assert isinstance(sender, MailSender)
    sender.fail_next(2)
    sender.fail_next(1, kind="permanent")
    for error in (TransientError, TransientError, PermanentError):
        with pytest.raises(error):
            sender.send(mail("a@example.org"))
    sender.send(mail("a@example.org"))
    sender.send(mail("b@example.org"))
    assert sender.attempts == 5 and len(sender.sent) == 2
    assert [m["To"] for m in sender.to("b@example.org")] == ["b@example.org"]
