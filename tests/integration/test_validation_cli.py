"""`python -m shared.validation` end to end: FHIR test server -> blobs in Azurite -> verdict."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from azure.storage.blob import ContainerClient

from shared.sources import FhirSource
from tests.support.azurite import Azurite
from tests.support.fhir_server import FhirTestServer

pytestmark = pytest.mark.azurite

ROOT = Path(__file__).resolve().parents[2]
SINCE = "2024-03-01T00:00:00Z"
TYPES = ("Patient", "Observation")


@pytest.fixture
def container(azurite: Azurite) -> Iterator[ContainerClient]:
    name = f"validate-{uuid.uuid4().hex[:12]}"
    with ContainerClient.from_connection_string(azurite.connection_string, name) as client:
        client.create_container()
        yield client


def export(source: FhirSource, container: ContainerClient, prefix: str, pages_per_file: int) -> None:
    """A minimal exporter: pages appended to `Type-N.ndjson`, a new file every few pages."""
    for resource_type in TYPES:
        cursor: str | None = None
        part, buffered, pages = 1, b"", 0
        while True:
            page = source.fetch_page(resource_type, cursor)
            buffered += page.ndjson
            pages += 1
            if pages == pages_per_file or page.is_last:
                container.upload_blob(f"{prefix}{resource_type}-{part}.ndjson", buffered)
                part, buffered, pages = part + 1, b"", 0
            if page.next_cursor is None:
                break
            cursor = page.next_cursor


def run_cli(azurite: Azurite, *args: str) -> subprocess.CompletedProcess[str]:
    # The connection string travels in the environment, not on the command line (ps shows argv).
    env = {
        **os.environ,
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.run(
        [sys.executable, "-m", "shared.validation", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_cli_accepts_a_correct_export_and_rejects_a_damaged_one(
    azurite: Azurite, container: ContainerClient
) -> None:
    with FhirTestServer({"Patient": 45, "Observation": 80}) as srv, httpx.Client() as http:
        source = FhirSource(http, srv.base_url, types=TYPES, since=SINCE, page_size=10)
        export(source, container, "job-1/", pages_per_file=2)
        container.upload_blob("job-1/manifest.json", b"{}")  # not NDJSON: ignored
        args = [
            "--fhir-base-url",
            srv.base_url,
            "--types",
            ",".join(TYPES),
            "--since",
            SINCE,
            "--container",
            container.container_name,
            "--prefix",
            "job-1/",
            "--page-size",
            "7",
        ]

        valid = run_cli(azurite, *args)
        assert valid.returncode == 0, valid.stdout + valid.stderr
        assert valid.stdout.startswith("export is VALID")
        assert "Observation: expected" in valid.stdout and "FAILED" not in valid.stdout

        # A file written twice (a retried page that was not deduplicated) must be caught.
        first = container.download_blob("job-1/Observation-1.ndjson").readall()
        parts = len([b for b in container.list_blob_names(name_starts_with="job-1/Observation-")])
        container.upload_blob(f"job-1/Observation-{parts + 1}.ndjson", first.splitlines(keepends=True)[0])
        damaged = run_cli(azurite, *args)
        assert damaged.returncode == 1, damaged.stdout + damaged.stderr
        assert "export is INVALID" in damaged.stdout and "duplicated 1: observation-" in damaged.stdout

        # Without `--since`, everything older is missing from the export.
        all_time = run_cli(azurite, *[a for a in args if a != SINCE and a != "--since"])
        assert all_time.returncode == 1 and "missing" in all_time.stdout


def test_cli_exits_2_when_it_cannot_validate(azurite: Azurite) -> None:
    with FhirTestServer({"Patient": 1}) as srv:
        missing_container = run_cli(
            azurite, "--fhir-base-url", srv.base_url, "--types", "Patient", "--container", "no-such-container"
        )
        assert missing_container.returncode == 2, missing_container.stdout + missing_container.stderr
        assert "could not validate" in missing_container.stderr
        bad_since = run_cli(
            azurite,
            "--fhir-base-url",
            srv.base_url,
            "--types",
            "Patient",
            "--since",
            "yesterday",
            "--container",
            "x",
        )
        assert bad_since.returncode == 2 and "since" in bad_since.stderr
        assert azurite.connection_string not in missing_container.stderr + bad_since.stderr
