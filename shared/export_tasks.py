"""Orchestration-level contracts of the export: what the job and type orchestrators receive and
what the prepare/page/commit/finish activities answer. Metadata only, never page bytes.

The page and commit task bodies (`PageTask`, `CommitTask`) live in `shared.contracts`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

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


def _request(data: Mapping[str, Any]) -> ExportRequest:
    return ExportRequest.from_dict(data)


@dataclass(frozen=True)
class JobInput:
    """The job orchestrator's input. After an operator retry (`run` > 0) it also carries where
    each failed type resumes (`resume`: its last committed checkpoint) and the outcomes of the
    types that had succeeded (`completed`), which are not run again."""

    job_id: str
    request: ExportRequest
    consecutive_failures: int = 0
    run: int = 0
    resume: Mapping[str, TypeCheckpoint] = field(default_factory=dict)
    completed: tuple[Mapping[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "consecutive_failures": self.consecutive_failures,
            "run": self.run,
            "resume": {t: cp.to_dict() for t, cp in self.resume.items()},
            "completed": [dict(o) for o in self.completed],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> JobInput:
        return cls(
            str(d["job_id"]),
            _request(d["request"]),
            int(d.get("consecutive_failures", 0)),
            int(d.get("run", 0)),
            {str(t): TypeCheckpoint.from_dict(cp) for t, cp in (d.get("resume") or {}).items()},
            tuple(dict(o) for o in d.get("completed") or ()),
        )


@dataclass(frozen=True)
class TypeInput:
    """A type orchestrator's input; after `continue_as_new` it is the last committed checkpoint."""

    job_id: str
    request: ExportRequest
    checkpoint: TypeCheckpoint

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "checkpoint": self.checkpoint.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TypeInput:
        return cls(str(d["job_id"]), _request(d["request"]), TypeCheckpoint.from_dict(d["checkpoint"]))


@dataclass(frozen=True)
class StepOutcome:
    """A permanent failure (`error`), a cancel seen, or success. Transient failures are raised."""

    error: str | None = None
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"error": self.error, "cancelled": self.cancelled}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> StepOutcome:
        return cls(d.get("error"), bool(d.get("cancelled")))


@dataclass(frozen=True)
class PageOutcome:
    """The page activity's answer: a result, a server-requested wait, or a cancel seen."""

    result: PageResult | None = None
    retry_after_s: float | None = None
    cancelled: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "result": self.result.to_dict() if self.result else None,
            "retry_after_s": self.retry_after_s,
            "cancelled": self.cancelled,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PageOutcome:
        result = PageResult.from_dict(d["result"]) if d.get("result") else None
        return cls(result, d.get("retry_after_s"), bool(d.get("cancelled")))


@dataclass(frozen=True)
class CommitAndRecord:
    """Commit one file, then record the type's progress (the checkpoint as of this commit)."""

    commit: CommitTask
    checkpoint: TypeCheckpoint

    def to_dict(self) -> dict[str, Any]:
        return {"commit": self.commit.to_dict(), "checkpoint": self.checkpoint.to_dict()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> CommitAndRecord:
        return cls(CommitTask.from_dict(d["commit"]), TypeCheckpoint.from_dict(d["checkpoint"]))


@dataclass(frozen=True)
class RecordUpdate:
    """A typed change to the job record, or (with `part`) to one part's progress."""

    job_id: str
    job: JobUpdate = JobUpdate()
    part: str | None = None
    part_update: PartUpdate = PartUpdate()

    def to_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "job": self.job.to_dict(), "part": self.part,
                "part_update": self.part_update.to_dict()}  # fmt: skip

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RecordUpdate:
        return cls(str(d["job_id"]), JobUpdate.from_dict(d.get("job") or {}), d.get("part"),
                   PartUpdate.from_dict(d.get("part_update") or {}))  # fmt: skip


@dataclass(frozen=True)
class FinishTask:
    """End of a job: delete partial files if asked, delete the job's secrets, write the outcome."""

    job_id: str
    request: ExportRequest
    state: str
    outcome: Mapping[str, Any]
    delete_files: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "request": self.request.to_dict(),
            "state": self.state,
            "outcome": dict(self.outcome),
            "delete_files": list(self.delete_files),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> FinishTask:
        return cls(str(d["job_id"]), _request(d["request"]), str(d["state"]), dict(d["outcome"]),
                   tuple(d.get("delete_files") or ()))  # fmt: skip
