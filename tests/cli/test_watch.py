"""`watch`: exit codes by outcome, about one look a second, outages ridden out, bars drawn.
Time is a fake clock: nothing here sleeps."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.cli.fake_api import FakeApi, FakeClock, batch_status, error, export_status, run_cli

pytestmark = pytest.mark.unit


def test_a_batch_that_succeeds_exits_0_with_bars_and_a_summary() -> None:
    api = FakeApi(statuses={"b1": [batch_status("b1", "queued"), batch_status("b1", "running", done=1),
                                   batch_status("b1", "succeeded", done=2)]})  # fmt: skip
    clock = FakeClock()
    result = run_cli(["watch", "b1"], api, clock=clock, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert clock.slept == [1.0, 1.0]  # one look a second, none after the end
    out = result.stdout
    assert [line.split()[-1] for line in out.splitlines()[:3]] == ["queued", "running", "succeeded"]
    assert "items" in out and "2/2" in out and "2.0 KB / 2.0 KB" in out and "scan-1.dcm" in out
    assert out.rstrip().splitlines()[-1] == "batch b1 succeeded: 2/2 items (2 succeeded), 2.0 KB of 2.0 KB"


@pytest.mark.parametrize(("state", "code"), [("failed", 1), ("cancelled", 2)])
def test_the_exit_code_tells_the_outcome(state: str, code: int) -> None:
    api = FakeApi(statuses={"b1": [batch_status("b1", "running"), batch_status("b1", state, done=1)]})
    result = run_cli(["watch", "b1"], api)
    assert result.exit_code == code, result.output
    assert f"batch b1 {state}" in result.stdout


def test_an_export_shows_its_types() -> None:
    api = FakeApi(
        statuses={"e1": [export_status("e1", "running", 50), export_status("e1", "succeeded", 200)]}
    )
    result = run_cli(["watch", "e1", "--interval", "0.5"], api, env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "Patient" in result.stdout and "200 resources, 1 files, 60.0 KB" in result.stdout


def test_watch_json_prints_only_the_last_status() -> None:
    final = batch_status("b1", "succeeded", done=2)
    api = FakeApi(statuses={"b1": [batch_status("b1", "running"), final]})
    result = run_cli(["watch", "b1", "--json"], api)
    assert result.exit_code == 0
    assert json.loads(result.stdout) == final


def test_a_passing_outage_is_ridden_out() -> None:
    unavailable = error(503, "unavailable", "a dependency is temporarily unavailable; try again")
    api = FakeApi(statuses={"b1": [batch_status("b1", "running"), unavailable, unavailable,
                                   batch_status("b1", "succeeded", done=2)]})  # fmt: skip
    result = run_cli(["watch", "b1"], api)
    assert result.exit_code == 0, result.output
    assert "503 Service Unavailable" in result.stdout and "trying again" in result.stdout
    assert "the service answers again" in result.stdout


def test_an_outage_longer_than_the_patience_is_an_error() -> None:
    unavailable = error(503, "unavailable", "try again")
    api = FakeApi(statuses={"b1": [batch_status("b1", "running"), unavailable]})
    clock = FakeClock()
    result = run_cli(["watch", "b1", "--patience", "10"], api, clock=clock)
    assert result.exit_code == 3
    assert result.stderr.strip() == "error: GET /api/jobs/b1: 503 Service Unavailable: try again"
    assert 10 <= clock.now <= 12


def test_an_unknown_job_ends_the_watch_at_once() -> None:
    result = run_cli(["watch", "nope"], FakeApi())
    assert result.exit_code == 3
    assert "404 Not Found: no job 'nope'" in result.stderr


def test_a_timeout_exits_4_saying_where_the_job_is() -> None:
    api = FakeApi(statuses={"b1": [batch_status("b1", "running")]})
    clock = FakeClock()
    result = run_cli(["watch", "b1", "--timeout", "5"], api, clock=clock)
    assert result.exit_code == 4
    assert result.stderr.strip() == "error: job b1 is still running after 5 s"
    assert clock.now == 5


def test_a_large_batch_draws_bars_for_the_items_under_way_only() -> None:
    doc = batch_status("b1", "running", done=3, items=40)
    doc["items"][5] = {**doc["items"][5], "state": "transferring", "bytes_done": 500}
    api = FakeApi(statuses={"b1": [doc, batch_status("b1", "succeeded", done=40, items=40)]})
    result = run_cli(["watch", "b1"], api, env={"COLUMNS": "120"})
    assert result.exit_code == 0
    # The last board: nothing under way, so no item bars; only the totals.
    assert "scan-" not in result.stdout
    assert "40/40" in result.stdout


def test_submit_watch_follows_the_new_job() -> None:
    api = FakeApi(
        statuses={"job-1": [batch_status("job-1", "running"), batch_status("job-1", "failed", done=1)]}
    )
    result = run_cli(["submit", "batch", "-", "--watch"], api, stdin=json.dumps({"items": ["a"]}))
    assert result.exit_code == 1, result.output
    assert "batch job-1 failed" in result.stdout
    assert [r.method for r in api.requests] == ["POST", "GET", "GET"]


def test_transport_errors_while_watching_count_as_an_outage() -> None:
    calls: list[int] = []

    def flaky(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        if len(calls) == 1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(200, json=batch_status("b1", "succeeded", done=2))

    result = run_cli(["watch", "b1"], transport=httpx.MockTransport(flaky))
    assert result.exit_code == 0, result.output
    assert "cannot reach http://bulk.test: is the service running?; trying again" in result.stdout
