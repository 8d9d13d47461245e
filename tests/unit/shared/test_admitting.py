"""The admission activity's work on the in-memory job store: admit, wait with a reason on the
record (shown as `waiting`), stop on a cancel; the stall check leaves a waiting job alone; the
reconciler's heal re-indexes a stale open-job row."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared import admitting, job_api
from shared.admission import MAX_WAIT_S, MIN_WAIT_S, AdmitTask
from shared.config import Settings, SettingsError
from shared.deps import Deps
from shared.jobs import JobState
from shared.jobstore import JobKind, JobUpdate, MemoryJobStore, OpenJob, new_record
from shared.reconcile_plan import RuntimeStatus, decide
from shared.secrets.local import LocalSecretStore
from shared.sessions import AUTO_REQUESTER

pytestmark = pytest.mark.unit

T0 = dt.datetime(2026, 12, 1, 10, 0, tzinfo=dt.UTC)


def make_deps(tmp_path: Path, jobs: MemoryJobStore | None = None, **env: str) -> Deps:
    return Deps(
        settings=Settings.from_env({"AzureWebJobsStorage": "UseDevelopmentStorage=true", **env}),
        secrets=LocalSecretStore(tmp_path / "secrets"),
        jobs=jobs or MemoryJobStore(),
        http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))),
        smart=cast(Any, None),
    )


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    return make_deps(tmp_path, MAX_RUNNING_JOBS_PER_USER="1")


def submit(deps: Deps, job_id: str, user: str = "a@example.com", kind: JobKind = JobKind.BATCH) -> str:
    deps.jobs.put_record(new_record(job_id, kind, {}, user, {}))
    return job_id


def admit(deps: Deps, job_id: str, at: float = 0) -> Any:
    return admitting.admit(AdmitTask(job_id=job_id), deps, now=T0 + dt.timedelta(seconds=at))


def admission(deps: Deps, job_id: str) -> dict[str, Any]:
    record = deps.jobs.get_record(job_id)
    assert record is not None
    return dict(record.get("admission") or {})


def test_the_first_job_is_admitted_and_holds_its_place_while_it_prepares(deps: Deps) -> None:
    first, second = submit(deps, "j1"), submit(deps, "j2")
    assert admit(deps, first).admitted
    assert admission(deps, first) == {"run": 0, "admitted": "2026-12-01T10:00:00Z"}
    answer = admit(deps, second)
    assert not answer.admitted and not answer.cancelled and answer.wait_s == MIN_WAIT_S
    assert answer.reason == "waiting for 1 earlier job of a@example.com (MAX_RUNNING_JOBS_PER_USER=1)"
    assert admit(deps, first).admitted  # asked again (a replayed activity): still admitted


def test_a_waiting_job_says_why_in_its_status_and_starts_when_the_earlier_one_ends(deps: Deps) -> None:
    first, second = submit(deps, "j1"), submit(deps, "j2")
    admit(deps, first)
    deps.jobs.update_record(first, JobUpdate(JobState.RUNNING))
    admit(deps, second)
    view = deps.jobs.view(second)
    assert view is not None
    header = job_api.status_header(view, "queued")
    assert header["state"] == "queued" and header["waiting"] == admission(deps, second)["waiting"]
    assert "1 earlier job of a@example.com" in header["waiting"]
    deps.jobs.update_record(first, JobUpdate(JobState.SUCCEEDED))
    assert admit(deps, second, at=40).admitted
    assert admission(deps, second) == {
        "run": 0,
        "admitted": "2026-12-01T10:00:40Z",
        "since": "2026-12-01T10:00:00Z",
    }
    view = deps.jobs.view(second)
    assert view is not None and job_api.status_header(view, "queued")["waiting"] is None


def test_the_wait_grows_with_the_time_waited_and_the_record_is_written_on_change_or_heartbeat(
    deps: Deps,
) -> None:
    submit(deps, "j1")
    admit(deps, "j1")
    second = submit(deps, "j2")
    admit(deps, second)
    written = deps.jobs.get_record(second)
    assert written is not None
    assert admit(deps, second, at=20).wait_s == 5.0
    assert deps.jobs.get_record(second) == written  # same reason, inside the heartbeat: no write
    assert admit(deps, second, at=3600).wait_s == MAX_WAIT_S
    assert admission(deps, second)["checked"] == "2026-12-01T11:00:00Z"  # the heartbeat
    submit(deps, "j3")
    third = admit(deps, "j3", at=3601)
    assert third.reason is not None and "2 earlier jobs" in third.reason


def test_a_cancel_or_an_ended_job_stops_the_wait(deps: Deps) -> None:
    submit(deps, "j1")
    admit(deps, "j1")
    submit(deps, "j2")
    deps.jobs.request_cancel("j2")
    assert admit(deps, "j2").cancelled
    submit(deps, "j3")
    deps.jobs.update_record("j3", JobUpdate(JobState.CANCELLED))
    assert admit(deps, "j3").cancelled


def test_a_job_already_under_way_or_without_caps_is_admitted_without_a_write(tmp_path: Path) -> None:
    deps = make_deps(tmp_path, MAX_RUNNING_JOBS_PER_USER="0", MAX_RUNNING_JOBS_PER_KIND="batch=0")
    for n in range(5):
        submit(deps, f"j{n}")
        assert admit(deps, f"j{n}").admitted
        assert admission(deps, f"j{n}") == {}
    capped = make_deps(tmp_path, MAX_RUNNING_JOBS_PER_USER="1")
    submit(capped, "r1")
    capped.jobs.update_record("r1", JobUpdate(JobState.RETRYING))
    assert admit(capped, "r1").admitted and admission(capped, "r1") == {}


def test_a_requeued_job_waits_again_for_its_new_run(deps: Deps) -> None:
    submit(deps, "j1")
    admit(deps, "j1")
    deps.jobs.update_record("j1", JobUpdate(JobState.FAILED))
    submit(deps, "j2")
    admit(deps, "j2")
    record = deps.jobs.get_record("j1")
    assert record is not None
    deps.jobs.put_record({**record, "state": "queued", "run": 1})  # what job_api.requeue writes
    answer = admit(deps, "j1")
    assert not answer.admitted and answer.reason is not None  # j2 holds the place now


def test_a_session_reopened_by_new_data_is_queued_again_for_its_run_and_waits_in_line(deps: Deps) -> None:
    submit(deps, "s1", kind=JobKind.SESSION)
    deps.jobs.update_record("s1", JobUpdate(JobState.RUNNING))
    deps.jobs.update_record("s1", JobUpdate(JobState.SUCCEEDED, finished="2026-12-01T09:00:00Z"))
    submit(deps, "j2")
    admit(deps, "j2")
    stale = admitting.admit(AdmitTask(job_id="s1", run=0), deps, now=T0)
    assert stale.cancelled  # an execution of the run that ended
    answer = admitting.admit(AdmitTask(job_id="s1", run=1), deps, now=T0)
    assert not answer.admitted and answer.reason is not None and "1 earlier job" in answer.reason
    record = deps.jobs.get_record("s1")
    assert record is not None and record["state"] == "queued" and record["run"] == 1
    assert record["finished"] is None and admission(deps, "s1")["run"] == 1


def test_sessions_of_the_service_itself_count_per_kind_only(tmp_path: Path) -> None:
    deps = make_deps(tmp_path, MAX_RUNNING_JOBS_PER_USER="1", MAX_RUNNING_JOBS_PER_KIND="session=2")
    for n in range(3):
        submit(deps, f"s{n}", AUTO_REQUESTER, JobKind.SESSION)
    assert [admit(deps, f"s{n}").admitted for n in range(3)] == [True, True, False]
    reason = admit(deps, "s2").reason
    assert reason == "waiting for 2 earlier session jobs (MAX_RUNNING_JOBS_PER_KIND session=2)"


def test_the_stall_check_leaves_a_job_waiting_its_turn_alone(deps: Deps) -> None:
    submit(deps, "j1")
    admit(deps, "j1")
    submit(deps, "j2")
    admit(deps, "j2")
    record = deps.jobs.get_record("j2")
    assert record is not None
    hours_ago = "2026-12-01T08:00:00Z"
    waiting = {**record, "created": hours_ago, "updated": hours_ago}  # only the checks go on
    now, stall = T0 + dt.timedelta(minutes=1), dt.timedelta(minutes=30)
    assert decide(waiting, [], False, RuntimeStatus("Running"), now=now, stall_after=stall) is None
    stopped = {**waiting, "admission": {**waiting["admission"], "checked": hours_ago}}
    verdict = decide(stopped, [], False, RuntimeStatus("Running"), now=now, stall_after=stall)
    assert verdict is not None and verdict.state is JobState.FAILED and verdict.terminate
    assert admitting.heartbeat_s(deps.settings) * 4 <= deps.settings.job_stall_minutes * 60


def test_heal_reindexes_open_rows_behind_their_record(deps: Deps) -> None:
    class LaggingStore(MemoryJobStore):
        """An open-job row left behind by a write that crashed between record and index."""

        def __init__(self) -> None:
            super().__init__()
            self.stale = OpenJob("gone", "batch", "a@example.com", "running", "2026-12-01T10:00:00.000000Z")
            self.reindexed: list[str] = []

        def open_jobs(self) -> tuple[OpenJob, ...]:
            return (*super().open_jobs(), *([] if "gone" in self.reindexed else [self.stale]))

        def reindex(self, job_id: str) -> None:
            self.reindexed.append(job_id)

    store = LaggingStore()
    lagging = make_deps(Path(deps.settings.local_secrets_path), store, MAX_RUNNING_JOBS_PER_USER="1")
    submit(lagging, "fresh")
    assert not admit(lagging, "fresh").admitted  # the stale row holds the only place
    assert admitting.heal_open_index(lagging) == 1 and store.reindexed == ["gone"]
    assert admitting.heal_open_index(lagging) == 0
    assert admit(lagging, "fresh").admitted


def test_the_caps_come_from_the_settings_and_a_bad_one_names_its_setting(tmp_path: Path) -> None:
    defaults = admitting.limits_of(make_deps(tmp_path).settings)
    assert defaults.per_user == 4 and dict(defaults.per_kind) == {
        "fhir-export": 8,
        "batch": 16,
        "session": 32,
    }
    given = make_deps(
        tmp_path, MAX_RUNNING_JOBS_PER_USER="0", MAX_RUNNING_JOBS_PER_KIND=" batch = 2 ,session=0"
    )
    limits = admitting.limits_of(given.settings)
    assert limits.per_user == 0 and dict(limits.per_kind) == {"fhir-export": 8, "batch": 2, "session": 0}
    assert limits.uncapped_users == {AUTO_REQUESTER}
    assert limits.open_per_user == 100
    for name, value in [("MAX_RUNNING_JOBS_PER_USER", "-1"), ("MAX_RUNNING_JOBS_PER_USER", "many"),
                        ("MAX_OPEN_JOBS_PER_USER", "-1"), ("MAX_OPEN_JOBS_PER_USER", "lots"),
                        ("MAX_RUNNING_JOBS_PER_KIND", "fax=2"), ("MAX_RUNNING_JOBS_PER_KIND", "batch"),
                        ("MAX_RUNNING_JOBS_PER_KIND", "batch=1,batch=2"), ("MAX_RUNNING_JOBS_PER_KIND", "batch=-3")]:  # fmt: skip
        with pytest.raises(SettingsError) as raised:
            make_deps(tmp_path, **{name: value})
        assert raised.value.setting == name, (name, value)


def test_a_requester_with_as_many_unfinished_jobs_as_allowed_gets_no_new_one(tmp_path: Path) -> None:
    deps = make_deps(tmp_path, MAX_OPEN_JOBS_PER_USER="2")
    submit(deps, "j1", "A@example.com")
    admitting.check_room(deps, "a@example.com")  # one unfinished: room for another
    submit(deps, "j2", "a@example.com", JobKind.FHIR_EXPORT)  # any kind counts
    with pytest.raises(admitting.TooManyJobs) as refused:
        admitting.check_room(deps, "a@Example.com")
    assert str(refused.value) == (
        "a@Example.com has 2 unfinished jobs (MAX_OPEN_JOBS_PER_USER=2); wait for some to end or cancel some"
    )
    assert refused.value.retry_after == "60"
    admitting.check_room(deps, "b@example.com")  # others are not held back
    admitting.check_room(deps, AUTO_REQUESTER)  # nor the service's own sessions
    deps.jobs.update_record("j1", JobUpdate(JobState.CANCELLED))
    admitting.check_room(deps, "a@example.com")  # an ended job frees its place
    submit(deps, "j3", "a@example.com")
    uncapped = make_deps(tmp_path, cast(MemoryJobStore, deps.jobs), MAX_OPEN_JOBS_PER_USER="0")
    admitting.check_room(uncapped, "a@example.com")
