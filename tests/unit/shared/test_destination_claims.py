"""One writer per destination prefix: a second unfinished job under an overlapping prefix is a
409 naming the destination, unless it says it may share; a finished job holds nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import httpx
import pytest

from shared import batch_api, job_api
from shared.config import Settings
from shared.deps import Deps
from shared.destination_claims import destination_key
from shared.destinations.http_put import PutDestinationSpec
from shared.jobs import JobState
from shared.jobstore import JobUpdate, MemoryJobStore
from shared.secrets.local import LocalSecretStore

pytestmark = pytest.mark.unit


@pytest.fixture
def deps(tmp_path: Path) -> Deps:
    env = {"AzureWebJobsStorage": "UseDevelopmentStorage=true", "OUTBOUND_ALLOW": "127.0.0.1",
           "DESTINATION_CONTAINERS": "*"}  # fmt: skip
    return Deps(settings=Settings.from_env(env), secrets=LocalSecretStore(tmp_path / "secrets"), jobs=MemoryJobStore(),
                http=httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(500))), smart=cast(Any, None))  # fmt: skip


def export(prefix: str, **options: Any) -> dict[str, Any]:
    return {"source": {"kind": "fhir", "base_url": "http://127.0.0.1:9/fhir", "types": ["Patient"]},
            "destination": {"kind": "blob", "container": "exports", "path_prefix": prefix},
            "requested_by": "a@example.com", **({"options": options} if options else {})}  # fmt: skip


def test_a_second_job_under_the_same_or_a_nested_prefix_is_a_conflict(deps: Deps) -> None:
    first = job_api.submit(export("study-1"), deps)
    for prefix in ("study-1", "study-1/more", ""):
        with pytest.raises(job_api.JobConflict) as conflict:
            job_api.submit(export(prefix), deps)
        assert conflict.value.field == "destination" and first.job.job_id in str(conflict.value)
    job_api.submit(export("study-10"), deps)  # a sibling prefix, not a nested one
    job_api.submit(export("study-1", share_destination=True), deps)


def test_a_finished_job_holds_nothing(deps: Deps) -> None:
    first = job_api.submit(export("done"), deps)
    deps.jobs.update_record(first.job.job_id, JobUpdate(JobState.FAILED, last_error="x"))
    job_api.submit(export("done"), deps)


def test_batches_and_exports_share_one_rule(deps: Deps) -> None:
    job_api.submit(export("mixed"), deps)
    batch = {"source": {"kind": "blob", "container": "acquired"}, "items": ["a.dcm"],
             "destination": {"kind": "blob", "container": "exports", "path_prefix": "mixed/batch"},
             "requested_by": "a@example.com"}  # fmt: skip
    with pytest.raises(job_api.JobConflict):
        batch_api.submit(batch, deps)
    batch["options"] = {"share_destination": True}
    batch_api.submit(batch, deps)


def test_put_keys_are_the_url_up_to_the_first_per_file_value() -> None:
    def key(template: str) -> str:
        spec = PutDestinationSpec.from_dict({"kind": "http_put", "base_url": "https://dav.example.org/in",
                                             "url_template": template})  # fmt: skip
        return destination_key(spec, None, {"project": "p1"})

    assert key("{base}/{project}/{path}") == "put:https://dav.example.org/in/p1/"
    assert key("{base}/{path}") == "put:https://dav.example.org/in/"
    assert key("{base}/x/{name}.dcm") == "put:https://dav.example.org/in/x/"
