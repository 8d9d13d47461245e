"""`watch`: poll a job's status about once a second until it ends, drawing progress bars.

`watch_job` is the command (bars, or the last status as JSON). `follow` is the loop (the clock is injected, so tests skip time): it calls `on_status` with each
status document, rides out a passing outage (no answer, 429, 5xx: a restarting runtime) for
`patience` seconds, and returns the exit code of the job's end (`codes.for_state`), or TIMEOUT.
`Board` draws an export's types (resources, files, bytes) or a batch's or session's items and
bytes, with a bar per item under way (every item's bar for a small batch).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Column
from rich.text import Text

from cli.api import ApiClient
from cli.codes import TERMINAL_STATES, ExitCode, for_state
from cli.errors import ApiError
from cli.render import human_bytes, state_text, summary_line

__all__ = ["Board", "Clock", "follow", "watch_job"]

ALL_ITEM_BARS = 10  # a batch with at most this many items shows a bar for each; else the active ones
NAME_WIDTH = 36  # an item's name is cut at the front: the end names the file
_ACTIVE = frozenset({"transferring", "retrying"})
_ENDED = frozenset({"succeeded", "failed", "cancelled", "skipped"})

Status = dict[str, Any]


@dataclass(frozen=True)
class Clock:
    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


def follow(
    client: ApiClient,
    job_id: str,
    on_status: Callable[[Status], None],
    *,
    interval: float = 1.0,
    timeout: float | None = None,
    patience: float = 60.0,
    on_trouble: Callable[[str], None] = lambda line: None,
    clock: Clock | None = None,
) -> tuple[ExitCode, Status | None]:
    """Poll `GET /api/jobs/{id}` every `interval` s until the job ends; its code and last status.

    An error that is not passing (404, 401, 400) raises at once; a passing one raises only after
    `patience` seconds without an answer. `timeout` (s) returns TIMEOUT with the last status."""
    clock = clock or Clock()
    started = clock.monotonic()
    failing_since: float | None = None
    last: Status | None = None
    while True:
        try:
            doc = client.job(job_id)
        except ApiError as exc:
            if not exc.transient:
                raise
            now = clock.monotonic()
            if failing_since is None:
                failing_since = now
                on_trouble(f"{exc}; trying again for {patience:g} s")
            elif now - failing_since >= patience:
                raise
        else:
            if failing_since is not None:
                on_trouble("the service answers again")
            failing_since, last = None, doc
            on_status(doc)
            if doc.get("state") in TERMINAL_STATES:
                return for_state(str(doc["state"])), doc
        if timeout is not None and clock.monotonic() - started >= timeout:
            return ExitCode.TIMEOUT, last
        clock.sleep(interval)


def _tail(name: str, width: int) -> str:
    return name if len(name) <= width else "…" + name[-(width - 1) :]


class _StateColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return state_text(str(task.fields.get("state", "")))


class _DetailColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(str(task.fields.get("detail", "")), style="dim")


class Board(Progress):
    """Progress bars under a header line (kind, id, state, last error), updated by `show`."""

    def __init__(self, **kwargs: Any) -> None:
        columns = (
            TextColumn(
                "{task.description}",
                markup=False,
                table_column=Column(no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH),
            ),
            BarColumn(bar_width=28),
            _DetailColumn(),
            _StateColumn(),
        )
        self.header = Text("")  # before Progress starts drawing
        self._bars: dict[str, TaskID] = {}
        super().__init__(*columns, refresh_per_second=4, **kwargs)

    def get_renderables(self) -> Iterable[RenderableType]:
        yield self.header
        yield self.make_tasks_table(self.tasks)

    def show(self, doc: Mapping[str, Any]) -> None:
        state = str(doc.get("state"))
        self.header = Text.assemble(
            (f"{doc.get('kind', 'job')} {doc.get('id')}", "bold"), "  ", state_text(state)
        )
        if doc.get("last_error"):  # one line, cut to the width: the summary at the end has it whole
            self.header.append(f"  {doc['last_error']}", style="red")
        self.header.no_wrap, self.header.overflow = True, "ellipsis"
        if isinstance(doc.get("progress"), Mapping):
            self._show_types(doc["progress"])
        else:
            self._show_items(doc)

    def _bar(self, key: str, description: str, **fields: Any) -> None:
        if key not in self._bars:
            self._bars[key] = self.add_task(description, total=None, state="", detail="")
        self.update(self._bars[key], **fields)

    def _drop(self, key: str) -> None:
        task = self._bars.pop(key, None)
        if task is not None:
            self.remove_task(task)

    def _show_types(self, progress: Mapping[str, Mapping[str, Any]]) -> None:
        for resource_type, p in progress.items():
            resources, state = int(p.get("resources") or 0), str(p.get("state") or "queued")
            detail = f"{resources} resources, {p.get('files', 0)} files, {human_bytes(p.get('bytes') or 0)}"
            # A source does not say how many resources a type has: the bar fills when the type ends.
            total = max(resources, 1) if state in _ENDED else None
            self._bar(
                resource_type,
                resource_type,
                completed=resources if total else 0,
                total=total,
                state=state,
                detail=detail,
            )

    def _show_items(self, doc: Mapping[str, Any]) -> None:
        counts: Mapping[str, Any] = doc.get("counts") or {}
        total = int(counts.get("items") or 0)
        ended = sum(int(counts.get(s) or 0) for s in _ENDED)
        failed = int(counts.get("failed") or 0)
        self._bar(
            "items",
            "items",
            completed=ended,
            total=total or None,
            state="",
            detail=f"{ended}/{total}" + (f" ({failed} failed)" if failed else ""),
        )
        size: Mapping[str, Any] = doc.get("bytes") or {}
        done, expected = int(size.get("done") or 0), int(size.get("total") or 0)
        self._bar(
            "bytes",
            "bytes",
            completed=done,
            total=expected or None,
            state="",
            detail=f"{human_bytes(done)} / {human_bytes(expected)}",
        )
        for item in doc.get("items") or []:
            key = f"item:{item.get('index', item.get('item'))}"
            state = str(item.get("state") or "queued")
            if total > ALL_ITEM_BARS and state not in _ACTIVE:
                self._drop(key)
                continue
            item_total = int(item.get("bytes_total") or 0) or None
            if item_total is None and state in _ENDED:  # failed before its size was known
                item_total = 1
            self._bar(
                key,
                _tail(str(item.get("item")), NAME_WIDTH),
                completed=int(item.get("bytes_done") or 0),
                total=int(item_total) if item_total else None,
                state=state,
                detail=human_bytes(item.get("bytes_done") or 0),
            )


def watch_job(
    client: ApiClient,
    job_id: str,
    console: Console,
    *,
    clock: Clock,
    interval: float = 1.0,
    timeout: float | None = None,
    patience: float = 60.0,
    json_out: bool = False,
) -> ExitCode:
    """Follow the job to its end: bars, a log of its states and a summary line; or, with
    `json_out`, only its last status document. The exit code of its end (TIMEOUT: a line on stderr)."""
    if json_out:
        code, last = follow(
            client,
            job_id,
            lambda doc: None,
            interval=interval,
            timeout=timeout,
            patience=patience,
            clock=clock,
        )
        if last is not None:
            typer.echo(json.dumps(last, indent=2))
    else:
        seen: list[str] = []
        started = clock.monotonic()

        def on_status(doc: Status) -> None:
            board.show(doc)
            if not seen or seen[-1] != doc.get("state"):
                seen.append(str(doc.get("state")))
                elapsed = Text(f"{clock.monotonic() - started:5.0f} s  ")
                board.console.print(elapsed.append_text(state_text(seen[-1])))  # a log above the bars

        with Board(console=console) as board:
            code, last = follow(
                client,
                job_id,
                on_status,
                interval=interval,
                timeout=timeout,
                patience=patience,
                clock=clock,
                on_trouble=lambda line: board.console.print(line, style="yellow"),
            )
        if last is not None and last.get("state") in TERMINAL_STATES:
            console.print(summary_line(last), style=state_text(str(last["state"])).style)
    if code == ExitCode.TIMEOUT:
        now = f"is still {last.get('state')}" if last else "gave no status"
        typer.echo(f"error: job {job_id} {now} after {timeout:g} s", err=True)
    return code
