"""End to end: a FHIR export to an HTTP PUT server (wsgidav). Pages are staged in the service's
storage and each NDJSON file is PUT once, whole, when complete (rollover or end), never per
commit; the files on the server are validated against the FHIR source."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from shared.validation import validate_export
from tests.support.export_env import ExportClient, export_body
from tests.support.fhir_server import FhirTestServer
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 130, "Observation": 70}, resource_bytes=1000) as server:
        yield server


def files_on(dav: WebDavTestServer, folder: str) -> Iterator[tuple[str, Iterator[bytes]]]:
    for path in sorted(dav.path(folder).glob("*.ndjson")):
        yield path.name, iter(path.read_bytes().splitlines(keepends=True))


def test_an_export_to_put_sends_each_file_once_whole_and_validates(
    client: ExportClient, fhir: FhirTestServer
) -> None:
    with WebDavTestServer(bearer="dav-export-token") as dav:
        body = export_body(fhir, ["Patient", "Observation"], "unused", "p", page_size=10,
                           commit_every_pages=2, max_file_bytes=40 * 1024)  # fmt: skip
        body["destination"] = {"kind": "http_put", "base_url": dav.base_url, "url_template": "{base}/{cohort}/{name}",
                               "auth": "bearer", "secret": "dav-export-token", "create_parents": True}  # fmt: skip
        body["labels"] = {"cohort": "c-42"}
        job = client.start(body)
        status = client.wait(job, timeout=120)
        assert status["state"] == "succeeded", status
        report = validate_export(fhir.expected_ids(["Patient", "Observation"]), files_on(dav, "c-42"))
        assert report.ok, report
        names = sorted(p.name for p in dav.path("c-42").glob("*.ndjson"))
        assert len([n for n in names if n.startswith("Patient-")]) >= 3  # rolled over
        puts = [r.path for r in dav.requests_to("PUT")]
        assert sorted(puts) == sorted(f"/dav/c-42/{n}" for n in names)  # one PUT per file, never per commit
        urls = {f["url"] for f in status["output"]}
        assert urls == {f"{dav.base_url}/c-42/{n}" for n in names}
        assert "dav-export-token" not in str(status) and "dav-export-token" not in client.rt.log_text()
