"""The job API's flows on the in-memory job store (no storage, no runtime): submit, list, show,
mark a cancel, retry a failed export, and settle a verdict; what the HTTP adapters call."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared import job_api
from shared.admitting import TooManyJobs
from shared.config import Settings
from shared.deps import Deps
from shared.errors import ValidationError
from shared.jobs import JobState
from shared.jobstore import JobUpdate, MemoryJobStore
from shared.reconcile_plan import Verdict
from shared.secrets.local import LocalSecretStore

pytestmark = pytest.mark.unit


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "OUTBOUND_ALLOW": "127.0.0.1"}
    return Deps(
        settings=Settings.from_env(env),
        secrets=LocalSecretStore(tmp_path / "secrets"),
        jobs=MemoryJobStore(),
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))),
        smart=cast(Any, None),
    )


def body(**changes: Any) -> dict[str, Any]:
    b: dict[str, Any] = {
        "source": {
            "kind": "fhir",
            "base_url": "http://127.0.0.1:9/fhir",
            "types": ["Patient", "Observation"],
            "auth_secret": "tok-1",
        },  # fmt: skip
        "destination": {"kind": "blob", "container": "exports", "path_prefix": "x"},
        "requested_by": "a@example.com",
    }
    b.update(changes)
    return b


def test_submit_records_a_queued_export_without_its_secret(deps: Deps) -> None:
    submitted = job_api.submit(body(), deps)
    record = deps.jobs.get_record(submitted.job.job_id)
    assert record is not None and record["kind"] == "fhir-export" and record["state"] == "queued"
    assert "tok-1" not in str(record)
    name = submitted.job.request.source.auth_secret_name
    assert name is not None and deps.secrets.get(name) == "tok-1"
    page = job_api.list_jobs({"requested_by": "A@example.com", "kind": "fhir-export"}, deps)
    assert [j["id"] for j in page["jobs"]] == [submitted.job.job_id]
    shown = job_api.show(submitted.job.job_id, deps)
    assert shown is not None and shown["progress"]["Patient"]["state"] == "queued"


def test_internal_sources_and_bad_filters_are_refused(deps: Deps) -> None:
    with pytest.raises(ValidationError) as caught:
        job_api.submit(
            body(source={"kind": "fhir", "base_url": "http://10.0.0.1/fhir", "types": ["Patient"]}), deps
        )
    assert caught.value.field == "source.base_url"
    for params, field in [
        ({"state": "x"}, "state"),
        ({"created_to": "soon"}, "created_to"),
        ({"limit": "0"}, "limit"),
    ]:
        with pytest.raises(ValidationError) as caught:
            job_api.list_jobs(params, deps)
        assert caught.value.field == field


def test_cancel_marks_only_live_jobs(deps: Deps) -> None:
    job_id = job_api.submit(body(), deps).job.job_id
    view = job_api.mark_cancel(job_id, deps)
    assert view is not None and view.cancel_requested and deps.jobs.cancel_requested(job_id)
    assert job_api.mark_cancel("no-such-job", deps) is None
    assert job_api.mark_cancel("../escape", deps) is None  # not even looked up


def test_retry_resumes_failed_types_and_keeps_succeeded_ones(deps: Deps) -> None:
    submitted = job_api.submit(body(), deps)
    job_id = submitted.job.job_id
    with pytest.raises(job_api.JobConflict):
        job_api.retry(job_id, None, deps)  # not failed yet
    deps.jobs.update_record(job_id, JobUpdate(JobState.RUNNING))
    deps.jobs.put_part(
        job_id, "Patient", {"state": "succeeded", "resources": 5, "files": [{"name": "Patient-1.ndjson"}]}
    )
    checkpoint = {"schema_version": 1, "type": "Observation", "cursor": "http://127.0.0.1:9/fhir/Observation?p=3",
                  "pages_done": 2, "files": [], "done": False, "consecutive_failures": 0}  # fmt: skip
    deps.jobs.put_part(
        job_id, "Observation", {"state": "failed", "last_error": "HTTP 403", "checkpoint": checkpoint}
    )
    job_api.settle(job_api.find(job_id, deps), Verdict(JobState.FAILED, "Observation: HTTP 403"), deps)  # type: ignore[arg-type]
    assert deps.jobs.get_record(job_id)["state"] == "failed"  # type: ignore[index]
    with pytest.raises(ValidationError) as caught:
        job_api.retry(job_id, {}, deps)
    assert caught.value.field == "source.auth_secret"
    again = job_api.retry(job_id, {"source": {"auth_secret": "tok-2"}}, deps)
    assert again is not None
    job = again.job
    assert job.run == 1 and [o["type"] for o in job.completed] == ["Patient"]  # type: ignore[union-attr]
    assert job.resume["Observation"].cursor == checkpoint["cursor"]  # type: ignore[union-attr]
    record = deps.jobs.get_record(job_id)
    assert (
        record is not None
        and record["state"] == "queued"
        and record["run"] == 1
        and record["finished"] is None
    )


def test_new_jobs_and_retries_over_the_open_jobs_cap_are_refused(deps: Deps) -> None:
    capped = replace(deps, settings=replace(deps.settings, max_open_jobs_per_user=1))
    first = job_api.submit(body(), capped).job.job_id
    with pytest.raises(TooManyJobs):
        job_api.submit(body(destination={"kind": "blob", "container": "exports", "path_prefix": "y"}), capped)
    job_api.settle(job_api.find(first, capped), Verdict(JobState.FAILED, "HTTP 403"), capped)  # type: ignore[arg-type]
    second = job_api.submit(
        body(destination={"kind": "blob", "container": "exports", "path_prefix": "y"}), capped
    )
    with pytest.raises(TooManyJobs):  # a retry is one more unfinished job too
        job_api.retry(first, {"source": {"auth_secret": "tok-2"}}, capped)
    assert deps.jobs.get_record(first)["state"] == "failed"  # type: ignore[index]
    assert deps.jobs.get_record(second.job.job_id)["state"] == "queued"  # type: ignore[index]
