"""What the durable engine persists, and the Store protocol its two implementations share.

Model (one task hub):
  * instances  - one row per orchestration instance (status, input/output, bookkeeping `state`)
                 and per entity (`@name@key`, its entity state in `state`, no history);
  * history    - the current execution's events, in order (reset by continue-as-new);
  * messages   - the inbox: events waiting for an instance (activity results, timer fires with
                 a future `visible_at`, raised events, entity requests, control requests);
  * work items - activities (and built-in HTTP calls) scheduled but not yet completed.

Crash safety comes from atomicity: an episode's history, status, consumed messages and the work
it schedules commit in one transaction; an activity's completion deletes its work item and adds
the result message in one transaction. Work items still present after a crash run again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

TERMINAL_STATUSES = frozenset({"Completed", "Failed", "Terminated", "Canceled"})


@dataclass
class Instance:
    instance_id: str
    name: str
    execution_id: str
    status: str  # Pending, Running, Completed, ContinuedAsNew, Failed, Canceled, Terminated, Suspended
    input: str | None  # ExecutionStarted.Input (JSON text)
    created: dt.datetime
    updated: dt.datetime
    output: str | None = None  # JSON text
    custom_status: str | None = None  # JSON text
    parent_instance_id: str | None = None
    parent_execution_id: str | None = None
    parent_task_id: int | None = None
    state: str = "{}"  # JSON: episode.Bookkeeping (orchestrations) or entities.EntityStatus


@dataclass(frozen=True)
class Message:
    instance_id: str
    kind: str  # "event" | "terminate" | "suspend" | "resume" | "rewind"
    body: str  # JSON text: the history event, or {"reason": ...} for control kinds
    visible_at: dt.datetime
    # None: delivered to whatever execution is current (raised events, control requests);
    # otherwise dropped if the instance has moved on (continue-as-new, restart).
    execution_id: str | None = None
    timer_id: int | None = None  # set for TimerFired, so a cancelled timer can be dropped
    id: int = 0  # assigned by the store


@dataclass(frozen=True)
class WorkItem:
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None
    kind: str = "activity"  # "activity" | "http"
    id: int = 0  # assigned by the store


@dataclass
class EpisodeCommit:
    """Everything one orchestrator episode changes, applied atomically."""

    instance: Instance
    history_append: list[str] = field(default_factory=list)  # event JSON texts
    history_reset: bool = False  # continue-as-new: history_append is the whole new history
    consumed: list[int] = field(default_factory=list)  # message ids
    new_messages: list[Message] = field(default_factory=list)
    new_work: list[WorkItem] = field(default_factory=list)
    new_instances: list[Instance] = field(default_factory=list)  # sub-orchestrations
    cancelled_timers: list[int] = field(default_factory=list)  # timer ids of this instance
    drop_inbox: bool = False  # terminal: discard every pending message of this instance


@dataclass(frozen=True)
class InstanceQuery:
    created_from: dt.datetime | None = None
    created_to: dt.datetime | None = None
    statuses: frozenset[str] | None = None
    prefix: str | None = None
    top: int | None = None
    continuation: str | None = None  # opaque: the last instance id of the previous page


class Store(Protocol):
    def create_instance(self, instance: Instance, start: Message) -> bool:
        """Insert (or replace a terminal one with the same id); False if one is still active."""
        ...

    def get_instance(self, instance_id: str) -> Instance | None: ...

    def query_instances(self, query: InstanceQuery) -> tuple[list[Instance], str | None]: ...

    def get_history(self, instance_id: str) -> list[str]: ...

    def add_message(self, message: Message) -> int: ...

    def ready_instances(self, now: dt.datetime, limit: int) -> list[str]:
        """Instances with a message visible at `now` (suspended ones only for control kinds)."""
        ...

    def messages_for(self, instance_id: str, now: dt.datetime) -> list[Message]:
        """Visible messages of one instance, oldest first."""
        ...

    def next_visible_at(self) -> dt.datetime | None:
        """The earliest visible_at among messages `ready_instances` can report (for the timer
        wake-up): events of suspended instances wait for resume, not for a time."""
        ...

    def commit_episode(self, commit: EpisodeCommit) -> list[WorkItem]:
        """Apply atomically; return the new work items with their ids."""
        ...

    def complete_work(self, work_id: int, result: Message) -> bool:
        """Delete the work item and enqueue its result atomically; False if already gone."""
        ...

    def pending_work(self) -> list[WorkItem]: ...

    def update_instance(self, instance: Instance) -> None: ...

    def replace_history(self, instance_id: str, events: Sequence[str]) -> None: ...

    def purge(self, instance_ids: Sequence[str]) -> int:
        """Delete instances (with history, inbox and work); return how many existed."""
        ...

    def close(self) -> None: ...
