"""Orchestration-level contracts of the export: what the job and type orchestrators receive and
what the prepare/page/commit/finish activities answer. Metadata only, never page bytes.

The page and commit task bodies (`PageTask`, `CommitTask`) live in `shared.contracts`.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer, PlainValidator

from shared._strict import Contract, Count, Items
from shared.contracts import CommitTask, ExportRequest, PageResult, TypeCheckpoint
from shared.jobstore.base import JobUpdate, PartUpdate

# Names of the durable functions, imported by orchestrators and blueprints alike.
JOB_ORCHESTRATOR = "export_job"
TYPE_ORCHESTRATOR = "export_type"
PREPARE_ACTIVITY = "export_prepare"
PAGE_ACTIVITY = "export_page"
COMMIT_ACTIVITY = "export_commit"
RECORD_ACTIVITY = "export_record"
FINISH_ACTIVITY = "export_finish"
CANCEL_EVENT = "cancel"


def type_instance_id(job_id: str, resource_type: str, run: int = 0) -> str:
    """The instance id of a job's type orchestration (derived, so cancels can reach it); each
    operator retry (`run`) gets fresh ids, so no instance of an earlier run is reused."""
    return f"{job_id}:{resource_type}" if run == 0 else f"{job_id}:{resource_type}:r{run}"


def _job_update(value: object) -> JobUpdate:
    return value if isinstance(value, JobUpdate) else JobUpdate.from_dict(value or {})  # type: ignore[arg-type]


def _part_update(value: object) -> PartUpdate:
    return value if isinstance(value, PartUpdate) else PartUpdate.from_dict(value or {})  # type: ignore[arg-type]


def _dump(update: JobUpdate | PartUpdate) -> dict[str, Any]:
    return update.to_dict()


# `shared.jobstore`'s hand-written update dataclasses, in their own dict shape.
_JobUpdate = Annotated[
    JobUpdate,
    PlainValidator(_job_update, json_schema_input_type=dict[str, Any]),
    PlainSerializer(_dump, return_type=dict[str, Any]),
]
_PartUpdate = Annotated[
    PartUpdate,
    PlainValidator(_part_update, json_schema_input_type=dict[str, Any]),
    PlainSerializer(_dump, return_type=dict[str, Any]),
]
Seconds = Annotated[float, BeforeValidator(lambda v: float(v) if type(v) is int else v)]


class JobInput(Contract):
    """The job orchestrator's input. After an operator retry (`run` > 0) it also carries where
    each failed type resumes (`resume`: its last committed checkpoint) and the outcomes of the
    types that had succeeded (`completed`), which are not run again."""

    job_id: str
    request: ExportRequest
    consecutive_failures: Count = 0
    run: Count = 0
    resume: dict[str, TypeCheckpoint] = {}
    completed: Items[dict[str, Any]] = ()
    # Set by every path that starts a run since the caps on running jobs and the cancellable
    # retries (`orchestrators.common.call_retrying`) came: a run started before them (its input
    # has no such field) replays as it was started, without the wait, with the runtime's retries.
    waits_turn: bool = False


class TypeInput(Contract):
    """A type orchestrator's input; after `continue_as_new` it is the last committed checkpoint."""

    job_id: str
    request: ExportRequest
    checkpoint: TypeCheckpoint
    # The job's `waits_turn`: pages are retried through `call_retrying` (a type started before
    # that has no such field and replays with the runtime's retries).
    cancellable_retries: bool = False


class StepOutcome(Contract):
    """A permanent failure (`error`), a cancel seen, or success. Transient failures are raised."""

    error: str | None = None
    cancelled: bool = False


class PageOutcome(Contract):
    """The page activity's answer: a result, a server-requested wait, or a cancel seen."""

    result: PageResult | None = None
    retry_after_s: Seconds | None = None
    cancelled: bool = False


class CommitAndRecord(Contract):
    """Commit one file, then record the type's progress (the checkpoint as of this commit)."""

    commit: CommitTask
    checkpoint: TypeCheckpoint


class RecordUpdate(Contract):
    """A typed change to the job record, or (with `part`) to one part's progress."""

    job_id: str
    job: _JobUpdate = JobUpdate()
    part: str | None = None
    part_update: _PartUpdate = PartUpdate()


class FinishTask(Contract):
    """End of a job: delete partial files if asked, delete the job's secrets, write the outcome."""

    job_id: str
    request: ExportRequest
    state: str
    outcome: dict[str, Any]
    delete_files: Items[str] = ()
