"""End to end: the installed `bulk-export` console script against the runtime running function_app.py
(Azurite, a WebDAV server, a FHIR test server), as a person or a script uses it: submit, watch to
the end (exit code by outcome), list, status, cancel, retry, validate; and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from azure.storage.blob import ContainerClient

from tests.support.azurite import Azurite
from tests.support.fhir_server import FhirTestServer
from tests.support.ports import free_port
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("bulk-export")


@dataclass
class Cli:
    """`bulk-export` run as a child process, with the service's URL and key in its environment."""

    url: str
    key: str

    def command(self) -> list[str]:
        # `make setup` installs the console script; a venv made before it still runs the package.
        return [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "cli"]

    def run(
        self, *args: str, stdin: str | None = None, timeout: float = 150, **env: str
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BULK_EXPORT_")}
        environ.update({"BULK_EXPORT_URL": self.url, "BULK_EXPORT_KEY": self.key, "COLUMNS": "120", **env})
        return subprocess.run(
            [*self.command(), *args], cwd=ROOT, env=environ, input=stdin, capture_output=True, text=True,
            timeout=timeout, check=False,
        )  # fmt: skip

    def json(self, *args: str) -> Any:
        done = self.run(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)


@pytest.fixture
def cli(service: RuntimeProcess) -> Cli:
    return Cli(service.base_url, service.function_key)


@pytest.fixture
def files(azurite: Azurite, request: pytest.FixtureRequest) -> Iterator[dict[str, bytes]]:
    """Three blobs in container `acquired`, under a folder named after the test."""
    folder = request.node.name[:40]
    made = {f"{folder}/scan-{i}.dcm": os.urandom(30_000 + i) for i in range(3)}
    with ContainerClient.from_connection_string(azurite.connection_string, "acquired") as c:
        if not c.exists():
            c.create_container()
        for name, data in made.items():
            c.upload_blob(name, data, overwrite=True)
        yield made


def batch_args(dav: WebDavTestServer, items: dict[str, bytes]) -> list[str]:
    args = ["submit", "batch", "--container", "acquired", "--put-url", dav.base_url,
            "--template", "{base}/{project}/{path}", "--label", "project=p1", "--requested-by", "tech@example.com"]  # fmt: skip
    for name in items:
        args += ["--item", name]
    return args


def test_the_console_script_is_installed() -> None:
    if not SCRIPT.exists():
        pytest.skip(f"{SCRIPT} is missing: run `make setup` (it installs the project editable)")
    done = subprocess.run([str(SCRIPT), "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0 and "watch" in done.stdout, done.stderr


def test_submit_then_watch_to_the_end_then_list_and_status(
    cli: Cli, dav: WebDavTestServer, files: dict[str, bytes]
) -> None:
    answer = cli.json(*batch_args(dav, files))
    job = answer["id"]
    assert answer["state"] == "queued"
    watched = cli.run("watch", job, "--timeout", "120")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert f"batch {job} succeeded: 3/3 items (3 succeeded)" in watched.stdout
    for name, data in files.items():
        assert dav.path(f"p1/{name}").read_bytes() == data, name
    listed = cli.json(
        "list", "--kind", "batch", "--requested-by", "tech@example.com", "--label", "project=p1"
    )
    assert job in [j["id"] for j in listed["jobs"]]
    table = cli.run("list", "--kind", "batch", "--state", "succeeded")
    assert table.returncode == 0 and job in table.stdout, table.stderr
    status = cli.json("status", job)
    assert status["state"] == "succeeded" and status["counts"] == {"items": 3, "succeeded": 3}
    human = cli.run("status", job)
    assert f"batch {job}  succeeded" in human.stdout and "3/3 items" in human.stdout


def test_a_failed_item_exits_1_and_a_retry_watched_to_the_end_exits_0(
    cli: Cli, dav: WebDavTestServer, files: dict[str, bytes]
) -> None:
    denied = sorted(files)[1]
    dav.fail(f"/dav/p1/{denied}", 403, times=None, reason="this path is closed", method="PUT")
    try:
        failed = cli.run(*batch_args(dav, files), "--watch")
    finally:
        dav.clear_faults()
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "failed" in failed.stdout.splitlines()[-1] and "403" in failed.stdout
    job = failed.stdout.split("batch ", 1)[1].split()[0]
    retried = cli.run("retry", job, "--watch")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert dav.path(f"p1/{denied}").read_bytes() == files[denied]


def test_cancel_a_job_that_waits_to_retry_and_watch_exits_2(
    cli: Cli, dav: WebDavTestServer, files: dict[str, bytes], tmp_path: Path
) -> None:
    body = {
        "source": {"kind": "blob", "container": "acquired"}, "items": list(files),
        "destination": {"kind": "http_put", "base_url": dav.base_url, "url_template": "{base}/{path}",
                        "create_parents": True},
        "options": {"concurrency": 1, "retry": {"first_retry_interval_ms": 30_000, "max_attempts": 5}},
        "requested_by": "tech@example.com",
    }  # fmt: skip
    path = tmp_path / "batch.json"
    path.write_text(json.dumps(body))
    dav.fail(f"/dav/{sorted(files)[0]}", 503, times=None, method="PUT")
    try:
        job = cli.json("submit", "batch", str(path))["id"]
        wait_until(lambda: cli.json("status", job)["state"] == "retrying", timeout=60, interval=0.5,
                   message="the batch to wait for a retry")  # fmt: skip
        cancelled = cli.run("cancel", job)
        assert cancelled.returncode == 0, cancelled.stderr
        assert f"cancel requested: batch {job}" in cancelled.stdout
        watched = cli.run("watch", job, "--timeout", "90")
    finally:
        dav.clear_faults()
    assert watched.returncode == 2, watched.stdout + watched.stderr
    assert f"batch {job} cancelled" in watched.stdout


def test_an_export_watched_to_the_end_is_valid(
    cli: Cli, azurite: Azurite, fhir: FhirTestServer, request: pytest.FixtureRequest
) -> None:
    prefix = f"cli-{os.getpid()}-{request.node.name[:20]}"
    done = cli.run("submit", "export", "--fhir-url", fhir.base_url, "--type", "Patient", "--type", "Observation",
                   "--container", "exports", "--prefix", prefix, "--requested-by", "engineer@example.com",
                   "--watch", "--json")  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    final = json.loads(done.stdout)
    assert final["state"] == "succeeded"
    assert final["progress"]["Patient"]["resources"] == 120
    validated = cli.run(
        "validate", "--fhir-base-url", fhir.base_url, "--types", "Patient,Observation", "--container", "exports",
        "--prefix", f"{prefix}/", AZURE_STORAGE_CONNECTION_STRING=azurite.connection_string,
    )  # fmt: skip
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "export is VALID" in validated.stdout


def test_errors_are_one_line_and_exit_3(cli: Cli, dav: WebDavTestServer) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    done = cli.run("list", BULK_EXPORT_URL=url)
    assert done.returncode == 3
    assert done.stderr.splitlines() == [f"error: cannot reach {url}: is the service running?"]
    assert done.stdout == ""
    done = cli.run("list", BULK_EXPORT_KEY="not-the-key")
    assert done.returncode == 3
    assert len(done.stderr.splitlines()) == 1 and "401 Unauthorized" in done.stderr
    assert cli.key not in done.stdout + done.stderr
    args = batch_args(dav, {"a.dcm": b"", "b.dcm": b""}) + ["--item", "a.dcm"]
    done = cli.run(*args)
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "error: POST /api/batches: 400 Bad Request: items[2]: is listed twice (also items[0])"
    ]
    done = cli.run("status", "no-such-job")
    assert done.returncode == 3
    assert done.stderr.splitlines() == [
        "error: GET /api/jobs/no-such-job: 404 Not Found: no job 'no-such-job' (field id)"
    ]
