"""The export job API as a client sees it: validation errors name the field, keys are required,
unknown jobs are 404, and listing filters and pages."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from tests.support.export_env import ExportClient, export_body
from tests.support.fhir_server import FhirTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 30, "Observation": 30}) as server:
        yield server


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda b: b.update(surprise=1), "surprise"),
        (lambda b: b["source"].update(page_size=0), "source.page_size"),
        (lambda b: b["source"].update(types=[]), "source.types"),
        (lambda b: b.update(requested_by="not-an-email"), "requested_by"),
        (lambda b: b["destination"].update(kind="ftp"), "destination.kind"),
        (lambda b: b.update(options={"max_file_bytes": 10}), "options.max_file_bytes"),
    ],
)
def test_bad_requests_are_400_naming_the_field(
    client: ExportClient, fhir: FhirTestServer, change, field: str
) -> None:  # type: ignore[no-untyped-def]
    body = export_body(fhir, ["Patient"], "api", "bad")
    change(body)
    r = client.submit(body)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["field"] == field and field in error["message"]
    assert "Traceback" not in r.text


def test_non_json_body_is_400(client: ExportClient) -> None:
    r = client.http.post(client.rt.url("api/exports"), content=b"{not json")
    assert r.status_code == 400 and r.json()["error"]["field"] == "body"


def test_key_required_and_unknown_job_is_404(client: ExportClient) -> None:
    assert httpx.get(client.rt.url("api/exports")).status_code == 401
    r = client.http.get(client.rt.url("api/exports/nope"))
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    assert client.http.delete(client.rt.url("api/exports/nope")).status_code == 404


def test_listing_filters_and_pages(client: ExportClient, fhir: FhirTestServer) -> None:
    ids = []
    for i in range(5):
        body = export_body(fhir, ["Patient"], "api", f"list{i}")
        body["requested_by"] = "lister@example.com" if i % 2 == 0 else "other@example.com"
        body["labels"] = {"batch": "listing-test", "n": str(i)}
        ids.append(client.start(body))
    for job_id in ids:
        assert client.wait(job_id)["state"] == "succeeded"

    def listed(**params: str) -> list[str]:
        found, continuation = [], None
        while True:
            query = dict(params, limit="2", **({"continuation": continuation} if continuation else {}))
            page = client.http.get(client.rt.url("api/exports"), params=query).json()
            assert len(page["jobs"]) <= 2
            found += [j["id"] for j in page["jobs"]]
            continuation = page["continuation"]
            if not continuation:
                return found

    assert sorted(listed(label="batch=listing-test")) == sorted(ids)
    assert sorted(listed(requested_by="lister@example.com", label="batch=listing-test")) == sorted(ids[0::2])
    assert listed(label="n=3") == [ids[3]]
    assert set(ids) <= set(listed(state="succeeded"))
    assert not set(ids) & set(listed(state="running"))
    bad = client.http.get(client.rt.url("api/exports"), params={"state": "sleeping"})
    assert bad.status_code == 400 and bad.json()["error"]["field"] == "state"


def test_the_jobs_api_lists_every_kind_newest_first_with_filters(
    client: ExportClient, fhir: FhirTestServer
) -> None:
    me = "jobs-api@example.com"
    ids = []
    for i in range(3):
        body = export_body(fhir, ["Patient"], "api", f"jobs{i}")
        body["requested_by"] = me
        ids.append(client.start(body))
    for job_id in ids:
        client.wait(job_id)
    jobs = client.http.get(client.rt.url("api/jobs"), params={"requested_by": me}).json()["jobs"]
    created = [j["created"] for j in jobs]
    assert created == sorted(created, reverse=True)  # newest first (same second: by id)
    assert {j["kind"] for j in jobs} == {"fhir-export"} and {j["id"] for j in jobs} == set(ids)
    today = jobs[0]["created"][:10]
    params = {"requested_by": me, "kind": "fhir-export", "created_from": today, "created_to": today}
    assert len(client.http.get(client.rt.url("api/jobs"), params=params).json()["jobs"]) == 3
    params = {"requested_by": me, "kind": "batch"}
    assert client.http.get(client.rt.url("api/jobs"), params=params).json()["jobs"] == []
    one = client.http.get(client.rt.url(f"api/jobs/{ids[0]}"))
    assert one.status_code == 200 and one.json() == client.status(ids[0])
    for params, field in [({"kind": "fax"}, "kind"), ({"created_from": "yesterday"}, "created_from"),
                          ({"limit": "0"}, "limit"), ({"continuation": "../x"}, "continuation")]:  # fmt: skip
        bad = client.http.get(client.rt.url("api/jobs"), params=params)
        assert bad.status_code == 400 and bad.json()["error"]["field"] == field, bad.text
    assert client.http.get(client.rt.url("api/jobs/nope")).status_code == 404
    assert client.http.delete(client.rt.url(f"api/jobs/{ids[0]}")).json()["state"] == "succeeded"
