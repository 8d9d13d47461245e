"""What a person reads: status documents, job lists and one-line summaries, drawn with rich.

Pure presentation of the API's JSON (whatever the job's kind: an export's `progress` per type,
a batch's or a session's `counts`, `bytes` and `items`); no I/O other than the console given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "human_bytes",
    "print_jobs",
    "print_status",
    "print_submitted",
    "progress_summary",
    "state_text",
    "summary_line",
]

ITEM_ROWS = 30  # items a status shows; `--json` has them all
_STYLES = {
    "succeeded": "green",
    "complete": "green",
    "failed": "bold red",
    "cancelled": "yellow",
    "retrying": "magenta",
    "running": "cyan",
    "transferring": "cyan",
    "in progress": "cyan",
    "queued": "dim",
    "skipped": "dim",
}
_ENDED_ITEM = ("succeeded", "failed", "cancelled", "skipped")


def state_text(state: str) -> Text:
    return Text(state, style=_STYLES.get(state, ""))


def human_bytes(count: float | None) -> str:
    if count is None:
        return "?"
    size = float(count)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(size) < 1000 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def _kind(doc: Mapping[str, Any]) -> str:
    return str(doc.get("kind") or "job")


def progress_summary(doc: Mapping[str, Any]) -> str:
    """How far a job has come, in a few words: resources for an export, items for the others."""
    if isinstance(doc.get("progress"), Mapping):
        parts = doc["progress"].values()
        resources = sum(int(p.get("resources") or 0) for p in parts)
        size = sum(int(p.get("bytes") or 0) for p in parts)
        done = sum(1 for p in parts if p.get("state") in _ENDED_ITEM)
        return f"{done}/{len(doc['progress'])} types, {resources} resources, {human_bytes(size)}"
    counts = doc.get("counts") or {}
    if not counts:
        return ""
    ended = sum(int(counts.get(s) or 0) for s in _ENDED_ITEM)
    words = ", ".join(f"{counts[s]} {s}" for s in ("succeeded", "failed", "skipped") if counts.get(s))
    moved: Mapping[str, Any] = doc.get("bytes") or {}
    text = f"{ended}/{counts.get('items', 0)} items"
    if words:
        text += f" ({words})"
    if moved:
        text += f", {human_bytes(moved.get('done'))} of {human_bytes(moved.get('total'))}"
    return text


def summary_line(doc: Mapping[str, Any]) -> str:
    """`batch 1234… succeeded: 3/3 items (3 succeeded), 60.0 KB of 60.0 KB` and the error, if any."""
    line = f"{_kind(doc)} {doc.get('id')} {doc.get('state')}"
    progress = progress_summary(doc)
    if progress:
        line += f": {progress}"
    if doc.get("last_error"):
        line += f"; {doc['last_error']}"
    return line


def print_submitted(console: Console, kind: str, answer: Mapping[str, Any]) -> None:
    job_id = answer.get("id")
    console.print(Text.assemble(f"{kind} {job_id} ", state_text(str(answer.get("state", "queued")))))
    if answer.get("status_url"):
        console.print(f"  status: {answer['status_url']}")
    console.print(f"  follow it: bulk-export watch {job_id}")


def _header(console: Console, doc: Mapping[str, Any]) -> None:
    title = Text.assemble((f"{_kind(doc)} {doc.get('id')}", "bold"), "  ", state_text(str(doc.get("state"))))
    if doc.get("status") and doc.get("status") != doc.get("state"):
        title.append(f"  ({doc['status']})")
    console.print(title)
    labels = doc.get("labels") or {}
    facts = [
        ("requested by", doc.get("requested_by")),
        ("labels", ", ".join(f"{k}={v}" for k, v in labels.items()) if labels else None),
        ("created", doc.get("created")),
        ("started", doc.get("started")),
        ("finished", doc.get("finished")),
        ("progress", progress_summary(doc) or None),
    ]
    for name, value in facts:
        if value:
            console.print(f"  {name}: {value}")
    if doc.get("cancel_requested") and doc.get("state") not in ("cancelled", "succeeded", "failed"):
        console.print("  cancel requested: stopping", style="yellow")
    if doc.get("last_error"):
        console.print(Text(f"  error: {doc['last_error']}", style="red"))


def _types_table(progress: Mapping[str, Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("type", "state", "resources", "files", "bytes"):
        table.add_column(name, justify="right" if name in ("resources", "files", "bytes") else "left")
    for resource_type, p in progress.items():
        table.add_row(
            resource_type,
            state_text(str(p.get("state", "queued"))),
            str(p.get("resources", 0)),
            str(p.get("files", 0)),
            human_bytes(p.get("bytes", 0)),
        )
    return table


def _items_table(items: Sequence[Mapping[str, Any]]) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    table.add_column("item", overflow="fold")
    table.add_column("state")
    table.add_column("bytes", justify="right")
    table.add_column("tries", justify="right")
    table.add_column("error", overflow="fold")
    for item in items:
        size = f"{human_bytes(item.get('bytes_done'))} / {human_bytes(item.get('bytes_total'))}"
        table.add_row(
            str(item.get("item")),
            state_text(str(item.get("state"))),
            size,
            str(item.get("attempts", 0)),
            str(item.get("last_error") or item.get("rule") or ""),
        )
    return table


def print_status(console: Console, doc: Mapping[str, Any]) -> None:
    """A job's status document: the header, then its types (an export) or its items."""
    _header(console, doc)
    if isinstance(doc.get("progress"), Mapping) and doc["progress"]:
        console.print(_types_table(doc["progress"]))
        files = [f.get("name") for f in doc.get("output") or []]
        if files:
            more = f" and {len(files) - 10} more" if len(files) > 10 else ""
            console.print(f"  files: {', '.join(str(f) for f in files[:10])}{more}")
    items: list[Mapping[str, Any]] = list(doc.get("items") or [])
    if items:
        shown = items
        if len(items) > ITEM_ROWS:  # the ones that need attention first
            shown = [i for i in items if i.get("state") != "succeeded"][:ITEM_ROWS]
        console.print(_items_table(shown))
        hidden = int((doc.get("counts") or {}).get("items", len(items))) - len(shown)
        if hidden > 0:
            console.print(f"  … {hidden} more item(s) not shown (--json shows the first 1,000)", style="dim")


def print_jobs(console: Console, listing: Mapping[str, Any]) -> None:
    """`GET /api/jobs` as a table, and how to get the next page."""
    jobs: list[Mapping[str, Any]] = list(listing.get("jobs") or [])
    if not jobs:
        console.print("no jobs", style="dim")
    else:
        # The id is what a person copies: never cut; the other columns fold or shrink first.
        table = Table(box=None, pad_edge=False, header_style="bold")
        width = max(len(str(j.get("id"))) for j in jobs)
        table.add_column("id", no_wrap=True, min_width=width)
        table.add_column("kind", no_wrap=True)
        table.add_column("state", no_wrap=True)
        table.add_column("requested by", overflow="fold", min_width=12)
        labelled = any(j.get("labels") for j in jobs)
        if labelled:
            table.add_column("labels", overflow="fold")
        table.add_column("created", overflow="fold")
        for job in jobs:
            created = str(job.get("created") or "").replace("T", " ")[:16]
            row: list[str | Text] = [
                str(job.get("id")),
                str(job.get("kind")),
                state_text(str(job.get("state"))),
                str(job.get("requested_by") or ""),
            ]
            if labelled:
                row.append(", ".join(f"{k}={v}" for k, v in (job.get("labels") or {}).items()))
            table.add_row(*row, created)
        console.print(table)
    if listing.get("continuation"):
        console.print(f"more: add --continuation {listing['continuation']}", style="dim")
