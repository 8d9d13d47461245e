"""Activities of the export: each decodes its contract, calls one function of shared.exporting,
and encodes the answer. Transient errors propagate so the orchestrator's retry policy fires.
Also the activities every kind's orchestration calls: `export_record` (its record writes) and
`job_admit` (whether the job may start under the caps on running jobs, `shared.admitting`)."""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

from shared import admitting, exporting
from shared.admission import ADMIT_ACTIVITY, AdmitTask
from shared.contracts import PageTask
from shared.deps import get_deps
from shared.export_tasks import (
    COMMIT_ACTIVITY,
    FINISH_ACTIVITY,
    PAGE_ACTIVITY,
    PREPARE_ACTIVITY,
    RECORD_ACTIVITY,
    CommitAndRecord,
    FinishTask,
    JobInput,
    RecordUpdate,
)
from shared.telemetry import traced_activity

bp = df.Blueprint()


@bp.activity_trigger(input_name="job", activity=PREPARE_ACTIVITY)
@traced_activity
def export_prepare(job: dict[str, Any]) -> dict[str, Any]:
    return exporting.prepare(JobInput.from_dict(job), get_deps()).to_dict()


@bp.activity_trigger(input_name="task", activity=PAGE_ACTIVITY)
@traced_activity
def export_page(task: dict[str, Any]) -> dict[str, Any]:
    return exporting.export_page(PageTask.from_dict(task), get_deps()).to_dict()


@bp.activity_trigger(input_name="task", activity=COMMIT_ACTIVITY)
@traced_activity
def export_commit(task: dict[str, Any]) -> dict[str, Any]:
    return exporting.commit(CommitAndRecord.from_dict(task), get_deps()).to_dict()


@bp.activity_trigger(input_name="update", activity=RECORD_ACTIVITY)
@traced_activity
def export_record(update: dict[str, Any]) -> None:
    exporting.record(RecordUpdate.from_dict(update), get_deps())


@bp.activity_trigger(input_name="task", activity=FINISH_ACTIVITY)
@traced_activity
def export_finish(task: dict[str, Any]) -> None:
    exporting.finish(FinishTask.from_dict(task), get_deps())


@bp.activity_trigger(input_name="task", activity=ADMIT_ACTIVITY)
@traced_activity
def job_admit(task: dict[str, Any]) -> dict[str, Any]:
    return admitting.admit(AdmitTask.from_dict(task), get_deps()).to_dict()
