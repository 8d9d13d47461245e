"""Outcome mail, end to end: queue it when a job ends, send what is due, let operators act.

    a job ends      `queue_outcome(job_id, deps)`: the submitter's report (unless a success of a
                    kind `MAIL_ON_SUCCESS` leaves out) and, if anything failed, the admins' alert,
                    rendered once and added to the outbox under keys `{job}:{run}:report|alert`
    the notifier    `send_due(deps, now)`: claim what is due, send it over SMTP, record the
                    verdict; a transient failure waits `MAIL_RETRY_SCHEDULE`, the last one (or a
                    5xx) makes the mail dead, for an operator to see and retry
    operators       `list_entries`, `retry_entry`, `delete_entry` (GET/POST/DELETE /api/notifications)

Queueing is called by every kind's end step (`exporting.finish`, `batching.finish`) after the
record says the job ended, and again when that step runs a second time, so a crash between the
two writes cannot lose the mail and a re-run cannot add a second (the outbox keys are stable).
The once-per-job reasoning is in `shared.outbox.base`. Framework-free.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Mapping
from email import message_from_string
from email.message import EmailMessage
from email.policy import default
from typing import Any, Final

from shared.deps import Deps
from shared.errors import PermanentError, TransientError, ValidationError
from shared.notify.base import MailSender
from shared.notify.messages import admin_alert, alert_due, report_due, submitter_report
from shared.outbox import Outbox, OutboxEntry, OutboxState

__all__ = ["delete_entry", "list_entries", "queue_outcome", "retry_entry", "send_due"]

log = logging.getLogger(__name__)

SEND_LIMIT: Final = 50  # mails one notifier run sends at most; the rest wait for the next run
# Requesters that are not people (the FHIR front door's fallback address): no report to them.
_NO_REPORT_DOMAINS: Final = (".invalid",)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def queue_outcome(job_id: str, deps: Deps) -> int:
    """Queue the outcome mail of a job that ended; the number of entries newly queued."""
    if not deps.settings.mail_enabled or deps.settings.mail_from is None:
        return 0
    from shared import job_api  # job_api imports the end steps that call this

    view = deps.jobs.view(job_id)
    if view is None or not job_api.is_ended(view):
        return 0
    status = job_api.present(view)
    run = int(view.record.get("run", 0))
    settings = deps.settings
    common: dict[str, Any] = {"run": run, "sender": settings.mail_from, "base_url": settings.public_base_url}
    queued = 0
    requester = str(status.get("requested_by") or "")
    admins = settings.admin_recipients
    wanted = {
        "report": report_due(status, settings.mail_on_success) and not requester.endswith(_NO_REPORT_DOMAINS),
        "alert": alert_due(status) and bool(admins),
    }
    for role in [r for r, due in wanted.items() if due]:
        try:
            message = (
                submitter_report(status, **common)
                if role == "report"
                else admin_alert(status, admins, **common)
            )
        except (ValueError, ValidationError) as exc:  # a mail that cannot be made must not stop the job's end
            log.warning("job %s: no %s mail: %s", job_id, role, exc)
            continue
        queued += _add(deps.outbox, f"{job_id}:{run}:{role}", job_id, message)
    return queued


def _add(outbox: Outbox, key: str, job_id: str, message: Any) -> int:
    to = [str(a) for a in message.get_all("To", [])]
    entry = OutboxEntry.new(key=key, job_id=job_id, to=to, subject=str(message["Subject"]),
                            message=message.as_string(), message_id=str(message["Message-ID"]), now=_now())  # fmt: skip
    added = outbox.add(entry)
    if added:
        log.info("job %s: mail %s queued for %s", job_id, key, ", ".join(to))
    return int(added)


@functools.cache
def _sender(host: str, port: int, security: str, username: str | None, password: str | None) -> MailSender:
    from shared.notify.smtp import SmtpSender

    return SmtpSender(host, port, security=security, username=username, password=password)  # type: ignore[arg-type]


def _mail_sender(deps: Deps) -> MailSender:
    s = deps.settings
    assert s.smtp_host is not None
    password = deps.secrets.get(s.smtp_password_secret) if s.smtp_password_secret else None
    return _sender(s.smtp_host, s.smtp_port, s.smtp_security, s.smtp_username, password)


def send_due(
    deps: Deps, now: dt.datetime | None = None, *, sender: MailSender | None = None
) -> dict[str, int]:
    """One notifier run: send what is due; counts of sent, retried later, dead."""
    counts = {"sent": 0, "later": 0, "dead": 0}
    if not deps.settings.mail_enabled:
        return counts
    now = now or _now()
    outbox = deps.outbox
    schedule = deps.settings.mail_retry_schedule
    for entry in outbox.due(now, SEND_LIMIT):
        claimed = outbox.claim(entry.key, now)
        if claimed is None:
            continue  # another run took it
        try:
            message = message_from_string(claimed.message, _class=EmailMessage, policy=default)
            (sender or _mail_sender(deps)).send(message)
        except (TransientError, PermanentError) as exc:
            permanent = isinstance(exc, PermanentError)
            after = outbox.mark_failed(claimed.key, now, str(exc), permanent=permanent, schedule=schedule)
            dead = after is not None and after.state is OutboxState.DEAD
            counts["dead" if dead else "later"] += 1
            log.warning("mail %s (job %s) not sent%s: %s", claimed.key, claimed.job_id,
                        "; dead, an operator must act" if dead else "; retried later", exc)  # fmt: skip
            continue
        outbox.mark_sent(claimed.key, now)
        counts["sent"] += 1
        log.info("mail %s (job %s) sent to %s", claimed.key, claimed.job_id, ", ".join(claimed.to))
    return counts


def present_entry(entry: OutboxEntry) -> dict[str, Any]:
    return {
        "key": entry.key,
        "job_id": entry.job_id,
        "to": list(entry.to),
        "subject": entry.subject,
        "message_id": entry.message_id,
        "state": entry.state.value,
        "attempts": entry.attempts,
        "next_attempt_at": entry.next_attempt_at.isoformat() if entry.next_attempt_at else None,
        "last_error": entry.last_error,
        "created": entry.created.isoformat(),
        "updated": entry.updated.isoformat(),
        "sent_at": entry.sent_at.isoformat() if entry.sent_at else None,
    }


def list_entries(params: Mapping[str, str], deps: Deps) -> dict[str, Any]:
    text = params.get("state", "dead")
    try:
        state = OutboxState(text)
    except ValueError:
        raise ValidationError("state", f"must be one of {', '.join(s.value for s in OutboxState)}") from None
    limit = params.get("limit", "50")
    if not limit.isdigit() or not 1 <= int(limit) <= 500:
        raise ValidationError("limit", "must be a whole number between 1 and 500")
    page = deps.outbox.list(state, int(limit), params.get("continuation") or None)
    return {"notifications": [present_entry(e) for e in page.entries], "continuation": page.continuation}


def retry_entry(key: str, deps: Deps) -> dict[str, Any] | None:
    """Re-queue a dead mail (due at once); None when there is no such mail."""
    entry = deps.outbox.get(key)
    if entry is None:
        return None
    if entry.state is not OutboxState.DEAD:
        raise ValidationError("state", f"only a dead mail can be retried; this one is {entry.state.value}")
    deps.outbox.retry(key, _now())
    again = deps.outbox.get(key)
    return present_entry(again) if again is not None else None


def delete_entry(key: str, deps: Deps) -> bool:
    return deps.outbox.delete(key)
