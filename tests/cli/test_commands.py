"""The CLI's commands against a fake API (httpx.MockTransport): requests, output, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.cli.fake_api import KEY, URL, FakeApi, batch_status, error, export_status, refuse, run_cli

pytestmark = pytest.mark.unit


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_submit_batch_from_flags_sends_the_body_and_says_how_to_follow() -> None:
    api = FakeApi()
    result = run_cli(
        ["submit", "batch", "--container", "acquired", "--item", "s/a.dcm", "--item", "s/b.dcm",
         "--put-url", "http://dav.test/dav/", "--template", "{base}/{project}/{path}",
         "--requested-by", "tech@example.com", "--label", "project=p1", "--concurrency", "2"],
        api,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    request = api.requests[-1]
    assert (request.method, request.url.path) == ("POST", "/api/batches")
    assert request.headers["x-functions-key"] == KEY
    assert api.body() == {
        "source": {"kind": "blob", "container": "acquired"},
        "items": ["s/a.dcm", "s/b.dcm"],
        "destination": {"kind": "http_put", "base_url": "http://dav.test/dav",
                        "url_template": "{base}/{project}/{path}", "create_parents": True},
        "requested_by": "tech@example.com",
        "options": {"concurrency": 2},
        "labels": {"project": "p1"},
    }  # fmt: skip
    assert "batch job-1 queued" in result.stdout
    assert "bulk-export watch job-1" in result.stdout


def test_submit_batch_to_a_container_takes_the_requester_from_the_environment() -> None:
    api = FakeApi()
    args = ["submit", "batch", "--container", "acquired", "--item", "a", "--dest-container", "delivered",
            "--dest-prefix", "d"]  # fmt: skip
    result = run_cli(args, api, env={"BULK_EXPORT_REQUESTED_BY": "me@example.com"})
    assert result.exit_code == 0, result.output
    assert api.body()["destination"] == {"kind": "blob", "container": "delivered", "path_prefix": "d"}
    assert api.body()["requested_by"] == "me@example.com"


def test_submit_from_a_file_or_stdin_applies_the_overrides(tmp_path: Path) -> None:
    body = {"source": {"kind": "fhir", "types": ["Patient"]}, "requested_by": "a@example.com",
            "labels": {"project": "x"}}  # fmt: skip
    path = tmp_path / "export.json"
    path.write_text(json.dumps(body))
    api = FakeApi()
    result = run_cli(
        ["submit", "export", str(path), "--requested-by", "b@example.com", "--label", "run=2"], api
    )
    assert result.exit_code == 0, result.output
    assert api.requests[-1].url.path == "/api/exports"
    assert api.body() == {**body, "requested_by": "b@example.com", "labels": {"project": "x", "run": "2"}}
    result = run_cli(["submit", "batch", "-", "--json"], api, stdin=json.dumps({"items": ["a"]}))
    assert result.exit_code == 0, result.output
    assert api.body() == {"items": ["a"]}
    assert json.loads(result.stdout) == {
        "id": "job-1",
        "state": "queued",
        "status_url": f"{URL}/api/batches/job-1",
    }


def test_the_requester_of_the_environment_fills_a_file_but_never_overrides_it() -> None:
    api = FakeApi()
    me = {"BULK_EXPORT_REQUESTED_BY": "me@example.com"}
    run_cli(["submit", "batch", "-"], api, env=me, stdin=json.dumps({"items": ["a"]}))
    assert api.body()["requested_by"] == "me@example.com"
    run_cli(
        ["submit", "batch", "-"],
        api,
        env=me,
        stdin=json.dumps({"items": ["a"], "requested_by": "x@example.com"}),
    )
    assert api.body()["requested_by"] == "x@example.com"


def test_submit_export_from_flags() -> None:
    api = FakeApi()
    result = run_cli(["submit", "export", "--type", "Patient,Observation", "--since", "2026-01-01T00:00:00Z",
                      "--prefix", "demo", "--requested-by", "e@example.com"], api)  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.body() == {
        "source": {"kind": "fhir", "types": ["Patient", "Observation"], "since": "2026-01-01T00:00:00Z"},
        "destination": {"kind": "blob", "path_prefix": "demo"},
        "requested_by": "e@example.com",
    }


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["submit", "batch", "--item", "a", "--dest-container", "d", "--requested-by", "t@example.com"],
         "--container (the source container) is needed"),
        (["submit", "batch", "--container", "c", "--item", "a", "--requested-by", "t@example.com"],
         "give one destination"),
        (["submit", "batch", "--container", "c", "--item", "a", "--dest-container", "d"], "--requested-by"),
        (["submit", "batch", "body.json", "--item", "a"], "not both"),
        (["submit", "batch", "missing.json"], "cannot read the body file missing.json"),
        (["submit", "export", "--requested-by", "t@example.com"], "at least one --type"),
        (["submit", "export", "--type", "Patient", "--requested-by", "e@x.org", "--label", "nolabel"],
         "--label must be key=value"),
        (["status"], "Missing argument 'ID'"),
        (["watch", "j", "--interval", "0"], "--interval"),
        (["list", "--state", "sleeping"], "--state"),
        (["--url", "ftp://x", "status", "j"], "--url must be an http:// or https:// URL"),
    ],
)  # fmt: skip
def test_usage_errors_are_one_line_with_exit_code_3(args: list[str], expected: str) -> None:
    api = FakeApi()
    result = run_cli(args, api)
    assert result.exit_code == 3, result.output
    assert expected in one_error_line(result.stderr)
    assert api.requests == []  # nothing was sent


def test_an_api_error_is_one_line_with_status_message_and_field() -> None:
    api = FakeApi()
    api.errors[("POST", "/api/batches")] = error(
        400, "invalid_request", "items[1]: duplicate item", "items[1]"
    )
    result = run_cli(["submit", "batch", "-"], api, stdin=json.dumps({"items": ["a", "a"]}))
    assert result.exit_code == 3
    line = one_error_line(result.stderr)
    assert line == "error: POST /api/batches: 400 Bad Request: items[1]: duplicate item"
    result = run_cli(["status", "nope"], api)
    assert (
        one_error_line(result.stderr) == "error: GET /api/jobs/nope: 404 Not Found: no job 'nope' (field id)"
    )
    assert result.exit_code == 3


def test_a_refused_key_says_how_to_give_one_and_never_shows_a_key() -> None:
    api = FakeApi(key="the-right-key")
    result = run_cli(["list", "--json"], api)
    assert result.exit_code == 3
    line = one_error_line(result.stderr)
    assert "401 Unauthorized" in line and "--key" in line and "BULK_EXPORT_KEY" in line
    assert KEY not in result.output
    help_text = run_cli(["--help"], api).output
    assert KEY not in help_text and "BULK_EXPORT_KEY" in help_text


def test_an_unreachable_service_is_one_clear_line() -> None:
    result = run_cli(["status", "j"], transport=httpx.MockTransport(refuse("[Errno 111] Connection refused")))
    assert result.exit_code == 3
    assert one_error_line(result.stderr) == f"error: cannot reach {URL}: is the service running?"


def test_an_answer_that_is_not_the_api_is_named() -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, text="<html>portal</html>"))
    result = run_cli(["status", "j"], transport=transport)
    assert result.exit_code == 3
    assert "is http://bulk.test the bulk export service?" in one_error_line(result.stderr)


def test_status_shows_a_batch_and_an_export() -> None:
    api = FakeApi(statuses={
        "b1": [batch_status("b1", "failed", done=1, last_error="1 of 2 files failed")],
        "e1": [export_status("e1", "succeeded", resources=200)],
    })  # fmt: skip
    out = run_cli(["status", "b1"], api, env={"COLUMNS": "120"}).stdout
    assert "batch b1  failed" in out
    assert "2/2 items (1 succeeded, 1 failed), 1.0 KB of 2.0 KB" in out
    assert "error: 1 of 2 files failed" in out
    assert "scan-1.dcm" in out
    out = run_cli(["status", "e1"], api, env={"COLUMNS": "120"}).stdout
    assert "fhir-export e1  succeeded" in out
    assert "Patient" in out and "200" in out and "Patient-1.ndjson" in out
    result = run_cli(["status", "e1", "--json"], api)
    assert json.loads(result.stdout) == export_status("e1", "succeeded", resources=200)


def test_list_passes_the_filters_and_prints_a_table() -> None:
    job = {"id": "2e62c2393cfb457c8c29f1f7a414732c", "kind": "batch", "state": "failed",
           "requested_by": "me@example.com", "labels": {"project": "p1"}, "created": "2026-11-22T06:57:55Z"}  # fmt: skip
    api = FakeApi(listing={"jobs": [job], "continuation": "00000000042-abc"})
    args = ["list", "--kind", "batch", "--state", "failed", "--mine", "--label", "project=p1", "--limit", "5",
            "--from", "2026-11-01"]  # fmt: skip
    result = run_cli(args, api, env={"BULK_EXPORT_REQUESTED_BY": "me@example.com", "COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert dict(api.requests[-1].url.params) == {
        "kind": "batch", "state": "failed", "requested_by": "me@example.com", "label": "project=p1",
        "limit": "5", "created_from": "2026-11-01",
    }  # fmt: skip
    assert "2e62c2393cfb457c8c29f1f7a414732c" in result.stdout and "project=p1" in result.stdout
    assert "--continuation 00000000042-abc" in result.stdout
    result = run_cli(["list", "--json"], api)
    assert json.loads(result.stdout) == api.listing
    result = run_cli(["list", "--mine"], api)
    assert result.exit_code == 3 and "BULK_EXPORT_REQUESTED_BY" in one_error_line(result.stderr)


def test_cancel_and_retry() -> None:
    api = FakeApi(
        statuses={"b1": [batch_status("b1", "running", done=1)], "b2": [batch_status("b2", "failed")]}
    )
    result = run_cli(["cancel", "b1"], api)
    assert result.exit_code == 0, result.output
    assert (api.requests[-1].method, api.requests[-1].url.path) == ("DELETE", "/api/jobs/b1")
    assert "cancel requested: batch b1 running" in result.stdout
    result = run_cli(["retry", "b1"], api)  # running: the API refuses
    assert result.exit_code == 3
    assert "409 Conflict: only a failed job can be retried; job b1 is running (field state)" in result.stderr
    result = run_cli(["retry", "b2", "--secret-file", "-", "--json"], api,
                     stdin=json.dumps({"destination": {"secret": "dav-token"}}))  # fmt: skip
    assert result.exit_code == 0, result.output
    assert api.requests[-1].url.path == "/api/jobs/b2/retry"
    assert api.body() == {"destination": {"secret": "dav-token"}}
    assert json.loads(result.stdout)["state"] == "queued"
    assert "dav-token" not in result.output


def test_a_job_id_cannot_reach_another_route() -> None:
    api = FakeApi()
    run_cli(["status", "../batches/x?y"], api)
    assert api.requests[-1].url.raw_path == b"/api/jobs/..%2Fbatches%2Fx%3Fy"


def test_validate_runs_the_validator_and_maps_its_codes() -> None:
    result = run_cli(["validate", "--help"])
    assert result.exit_code == 0
    assert "--fhir-base-url" in result.stdout
    result = run_cli(["validate", "--types", "Patient"])  # argparse: required options missing
    assert result.exit_code == 3
