"""The outcome e-mail of a job, built from its status document (pure; no I/O, no settings).

`submitter_report` tells the submitter how the job went; `admin_alert` tells the admins a job
failed (wholly or in part). Both take the dict `shared.job_api.present(view)` returns (an export's
or a batch's, told apart by `kind`) and give an `EmailMessage` with a plain-text and an HTML part.
The HTML uses inline styles only and no images, and every value that came from a request (item
names, labels, errors quoting servers) is escaped. The `Message-ID` is stable per (job, run,
role), so a message sent again after a lost reply is recognisably the same one.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Final, Literal

from shared._strict import check_email
from shared.errors import ValidationError
from shared.notify import _render

__all__ = [
    "MAX_LISTED",
    "Role",
    "admin_alert",
    "alert_due",
    "check_recipient",
    "message_id",
    "report_due",
    "submitter_report",
]

Role = Literal["report", "alert"]
MAX_LISTED: Final = 20  # failed items in one message; the status link has them all
SUBJECT_PREFIX: Final = "[bulk-export]"
_ID: Final = re.compile(r"^[A-Za-z0-9-]{1,64}$")
# Beyond check_email: characters that would make one address several, or a display name.
_ADDRESS_SPECIALS: Final = re.compile(r"[<>,;:\"()\[\]\\\x00-\x1f\x7f]")
_ENDED: Final = frozenset({"succeeded", "failed", "cancelled"})


def check_recipient(address: str, field: str = "recipient") -> str:
    """`address` if it is one plain mailbox (`name@domain.tld`); else a ValidationError naming
    `field`. Stricter than `check_email`: no commas, angle brackets or quotes, so an address
    from a request can never add a recipient or a header."""
    check_email(field, address)
    if _ADDRESS_SPECIALS.search(address):
        raise ValidationError(field, "must be a plain address, without < > , ; : quotes or brackets")
    return address


def message_id(job_id: str, run: int, role: Role, domain: str) -> str:
    """`<job-{id}-{run}-{role}@{domain}>`: the same for every send of one message."""
    if not _ID.match(job_id) or run < 0 or role not in ("report", "alert"):
        raise ValueError("job id must be letters, digits or dashes; run >= 0; role report|alert")
    return f"<job-{job_id}-{run}-{role}@{domain}>"


def report_due(status: Mapping[str, Any], on_success: Collection[str]) -> bool:
    """Whether the submitter hears of this end: always for failed or cancelled, for a success
    only if its kind is in `on_success` (MAIL_ON_SUCCESS)."""
    state = status["state"]
    if state == "succeeded":
        return _kind(status) in on_success
    return state in _ENDED


def alert_due(status: Mapping[str, Any]) -> bool:
    """Whether the admins are alerted: on any failure, also a batch that succeeded with some
    failed items (`partial_failure: succeed`)."""
    return status["state"] == "failed" or (
        status["state"] in _ENDED and _summary(status, MAX_LISTED).failed > 0
    )


def submitter_report(
    status: Mapping[str, Any],
    *,
    run: int,
    sender: str,
    base_url: str | None = None,
    max_listed: int = MAX_LISTED,
) -> EmailMessage:
    """The submitter's report of a job that ended, to `status["requested_by"]`."""
    summary = _summary(status, max_listed)
    return _message(
        summary, "report", [check_recipient(summary.requested_by, "requested_by")], run, sender, base_url
    )


def admin_alert(
    status: Mapping[str, Any],
    admins: Sequence[str],
    *,
    run: int,
    sender: str,
    base_url: str | None = None,
    max_listed: int = MAX_LISTED,
) -> EmailMessage:
    """The admins' alert about a job that failed (wholly or in part), to every address in `admins`."""
    if not admins:
        raise ValueError("an alert needs at least one admin address")
    recipients = [check_recipient(a, "admins") for a in dict.fromkeys(admins)]
    return _message(_summary(status, max_listed), "alert", recipients, run, sender, base_url)


@dataclass(frozen=True)
class Summary:
    """What both messages say, in plain values (the renderers only format it)."""

    job_id: str
    kind: str
    state: str
    requested_by: str
    outcome: str  # e.g. "succeeded: 50 of 50 files", the subject's tail
    facts: list[tuple[str, str]]  # (label, value) rows: counts, bytes, times, labels
    parts: list[tuple[str, str, str]]  # (name, state, detail): an export's types
    listed: list[tuple[str, str, str]]  # (item, state, reason): failed or skipped items
    unlisted: int  # failed or skipped items beyond `listed`
    error: str | None
    failed: int  # failed items or types
    ended: str | None  # ISO instant the job finished (else last updated), for the Date header


def _message(
    summary: Summary, role: Role, to: list[str], run: int, sender: str, base_url: str | None
) -> EmailMessage:
    check_recipient(sender, "sender")
    link = f"{base_url.rstrip('/')}/api/jobs/{summary.job_id}" if base_url else None
    noun = "export" if summary.kind == "fhir-export" else summary.kind
    short = f"{summary.job_id[:8]}…" if len(summary.job_id) > 8 else summary.job_id
    prefix = f"{SUBJECT_PREFIX} alert:" if role == "alert" else SUBJECT_PREFIX
    message = EmailMessage()
    message["Subject"] = f"{prefix} {noun} {short} {summary.outcome}"
    message["From"] = sender
    message["To"] = ", ".join(to)
    message["Message-ID"] = message_id(summary.job_id, run, role, sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: auto-responders do not answer
    message["X-Bulk-Export-Job"] = f"{summary.job_id} run {run}"
    when = _instant(summary)
    if when is not None:
        message["Date"] = format_datetime(when)  # the job's end: the same on every re-send
    message.set_content(_render.text(summary, role, run, link))
    message.add_alternative(_render.html(summary, role, run, link), subtype="html")
    return message


def _instant(summary: Summary) -> dt.datetime | None:
    try:
        return dt.datetime.fromisoformat(summary.ended) if summary.ended else None
    except ValueError:
        return None


def _kind(status: Mapping[str, Any]) -> str:
    return str(status.get("kind") or "fhir-export")  # export documents carry no kind


def _summary(status: Mapping[str, Any], max_listed: int) -> Summary:
    kind = _kind(status)
    if status.get("state") not in _ENDED:
        raise ValueError(f"job {status.get('id')} has not ended (state {status.get('state')})")
    if kind in ("batch", "session"):  # both are files moved one by one, with a state each
        return _batch(status, max_listed)
    if kind == "fhir-export":
        return _export(status)
    raise ValueError(f"no outcome message for jobs of kind {kind!r}")


def _common(status: Mapping[str, Any]) -> list[tuple[str, str]]:
    rows = [(label, str(status[key])) for label, key in
            (("Started", "started"), ("Finished", "finished"), ("Updated", "updated")) if status.get(key)]  # fmt: skip
    labels = status.get("labels") or {}
    if labels:
        rows.append(("Labels", ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))))
    return rows


def _ended(status: Mapping[str, Any]) -> str | None:
    value = status.get("finished") or status.get("updated")
    return str(value) if value else None


def _export(status: Mapping[str, Any]) -> Summary:
    progress: Mapping[str, Mapping[str, Any]] = status.get("progress") or {}
    states = [p.get("state") for p in progress.values()]
    failed, total = states.count("failed"), len(states)
    resources = sum(int(p.get("resources") or 0) for p in progress.values())
    files = sum(int(p.get("files") or 0) for p in progress.values())
    size = sum(int(p.get("bytes") or 0) for p in progress.values())
    state = status["state"]
    if state == "succeeded":
        outcome = f"succeeded: {resources:,} resources in {files} files"
    elif state == "cancelled":
        outcome = "cancelled"
    elif failed and failed < total and states.count("succeeded"):
        outcome = f"partially failed: {failed} of {total} types failed"
    else:
        outcome = f"failed: {failed} of {total} types failed" if failed else "failed"
    facts = [("Resources", f"{resources:,}"), ("Files", str(files)), ("Size", _render.size(size)),
             *_common(status)]  # fmt: skip
    parts = [(t, str(p.get("state")), f"{int(p.get('resources') or 0):,} resources, "
              f"{int(p.get('files') or 0)} files, {_render.size(int(p.get('bytes') or 0))}")
             for t, p in progress.items()]  # fmt: skip
    return Summary(str(status["id"]), "fhir-export", state, str(status["requested_by"]), outcome, facts,
                   parts, [], 0, status.get("last_error"), failed, _ended(status))  # fmt: skip


def _batch(status: Mapping[str, Any], max_listed: int) -> Summary:
    counts: Mapping[str, int] = status.get("counts") or {}
    items, ok = int(counts.get("items") or 0), int(counts.get("succeeded") or 0)
    failed, skipped = int(counts.get("failed") or 0), int(counts.get("skipped") or 0)
    state = status["state"]
    if state == "succeeded" and not failed:
        outcome = f"succeeded: {ok} of {items} files"
    elif state == "succeeded":
        outcome = f"partially failed: {failed} of {items} files failed"
    elif state == "failed":
        outcome = (
            f"failed: {failed} of {items} files failed" if failed else f"failed: {ok} of {items} files moved"
        )
    else:
        outcome = f"cancelled: {ok} of {items} files moved"
    size = status.get("bytes") or {}
    facts = [("Files", f"{ok} of {items} moved"), ("Failed", str(failed)), ("Skipped", str(skipped)),
             ("Moved", _render.size(int(size.get("done") or 0))), *_common(status)]  # fmt: skip
    if counts.get("cancelled"):
        facts.insert(3, ("Cancelled", str(counts["cancelled"])))
    bad = [i for i in status.get("items") or [] if i.get("state") in ("failed", "skipped")]
    listed = [(str(i.get("item")), str(i.get("state")), str(i.get("last_error") or "no reason recorded"))
              for i in bad[:max_listed]]  # fmt: skip
    unlisted = max(failed + skipped - len(listed), 0)
    return Summary(str(status["id"]), _kind(status), state, str(status["requested_by"]), outcome, facts, [],
                   listed, unlisted, status.get("last_error"), failed, _ended(status))  # fmt: skip
