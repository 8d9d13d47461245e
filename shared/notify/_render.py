"""Plain-text and HTML bodies of an outcome message (`messages.Summary` in, a string out).

The HTML is for common mail clients (Outlook, Gmail, Apple Mail): a table layout with inline
styles, system fonts, no images, no scripts, no remote resources. Every value is escaped, and a
value that came from a request is never made a link (an item may be any URL).
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from shared.notify.messages import Role, Summary

__all__ = ["html", "size", "text"]

_COLOURS: Final = {"succeeded": "#1a7f37", "failed": "#cf222e", "cancelled": "#6e7781", "skipped": "#9a6700"}
_CELL: Final = "padding:4px 8px;border-bottom:1px solid #d0d7de;text-align:left;vertical-align:top"
_MAX_CHARS: Final = 500  # one reason or item name; servers' messages can be long


def size(count: int) -> str:
    """`1.5 MiB (1,572,864 bytes)`; bytes alone below 1 KiB."""
    if count < 1024:
        return f"{count:,} bytes"
    value, units = count / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]} ({count:,} bytes)"


def _line(value: str) -> str:
    """One line of at most _MAX_CHARS: a name with a newline cannot fake lines of the report."""
    flat = " ".join(value.split())
    return flat if len(flat) <= _MAX_CHARS else flat[: _MAX_CHARS - 1] + "…"


def _intro(summary: Summary, role: Role, run: int) -> str:
    noun = "export" if summary.kind == "fhir-export" else summary.kind
    again = f" (run {run + 1})" if run else ""
    if role == "alert":
        return f"The {noun} job {summary.job_id}{again} of {summary.requested_by} {summary.outcome}."
    return f"Your {noun} job {summary.job_id}{again} {summary.outcome}."


def text(summary: Summary, role: Role, run: int, link: str | None) -> str:
    lines = [_intro(summary, role, run), ""]
    width = max((len(label) for label, _ in summary.facts), default=0)
    lines += [f"{label + ':':<{width + 1}} {_line(value)}" for label, value in summary.facts]
    if summary.error:
        lines += ["", f"Reason: {_line(summary.error)}"]
    if summary.parts:
        lines += ["", "Types:"] + [f"  {_line(n)}: {s}, {d}" for n, s, d in summary.parts]
    if summary.listed:
        lines += ["", "Items that did not move:"]
        lines += [f"  - {_line(item)} ({state}): {_line(reason)}" for item, state, reason in summary.listed]
    if summary.unlisted:
        lines.append(f"  … and {summary.unlisted} more (see the job's status)")
    if link:
        lines += ["", f"Status: {link}", "(the status API needs a function key)"]
    lines += ["", "-- ", "This message was sent automatically by the bulk export service."]
    return "\n".join(lines) + "\n"


def _state(state: str) -> str:
    colour = _COLOURS.get(state, "#24292f")
    return f'<span style="color:{colour};font-weight:bold">{escape(state)}</span>'


def _table(header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> str:
    head = "".join(f'<th style="{_CELL};background:#f6f8fa">{escape(h)}</th>' for h in header if h)
    body = "".join(
        "<tr>" + "".join(f'<td style="{_CELL}">{cell}</td>' for cell in row) + "</tr>" for row in rows
    )
    return (f'<table role="presentation" cellspacing="0" cellpadding="0" '
            f'style="border-collapse:collapse;margin:8px 0;font-size:14px">{f"<tr>{head}</tr>" if head else ""}{body}</table>')  # fmt: skip


def html(summary: Summary, role: Role, run: int, link: str | None) -> str:
    out = [f'<p style="margin:0 0 12px 0">{escape(_intro(summary, role, run))}</p>']
    facts = [(f"<b>{escape(label)}</b>", escape(_line(value))) for label, value in summary.facts]
    out.append(_table(("", ""), [("<b>State</b>", _state(summary.state)), *facts]))
    if summary.error:
        out.append(f'<p style="margin:12px 0"><b>Reason:</b> {escape(_line(summary.error))}</p>')
    if summary.parts:
        rows = [(escape(_line(n)), _state(s), escape(d)) for n, s, d in summary.parts]
        out.append(_table(("Type", "State", "Moved"), rows))
    if summary.listed:
        out.append('<p style="margin:12px 0 4px 0"><b>Items that did not move</b></p>')
        rows = [(escape(_line(i)), _state(s), escape(_line(r))) for i, s, r in summary.listed]
        out.append(_table(("Item", "State", "Reason"), rows))
    if summary.unlisted:
        out.append(f'<p style="margin:4px 0">… and {summary.unlisted} more (see the job\'s status)</p>')
    if link:
        out.append(f'<p style="margin:12px 0"><a href="{escape(link, quote=True)}" style="color:#0969da">'
                   f"Job status</a> (the status API needs a function key)</p>")  # fmt: skip
    out.append('<p style="margin:16px 0 0 0;color:#6e7781;font-size:12px">'
               "This message was sent automatically by the bulk export service.</p>")  # fmt: skip
    return ('<!DOCTYPE html><html><body style="margin:0;padding:16px;font-family:-apple-system,'
            f'Segoe UI,Helvetica,Arial,sans-serif;color:#24292f">{"".join(out)}</body></html>')  # fmt: skip
