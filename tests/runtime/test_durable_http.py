"""Conformance through the real azure-functions-durable SDK client, over HTTP, on the runtime process.

The app (tests/apps/durable_app) is an ordinary Durable Functions app: HTTP starters call the
SDK client, which talks to the runtime's management API (rpcBaseUrl); status URLs come from
`create_check_status_response` and are followed as a person would.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from tests.support.durable_client import DurableApp, running_durable_app

pytestmark = pytest.mark.runtime


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableApp]:
    state = tmp_path_factory.mktemp("durable-http") / "state"
    with running_durable_app(state, env={"SELFHOST_HTTP_POLL_SECONDS": "0.2"}) as client:
        yield client


def test_chaining_and_status_codes(app: DurableApp) -> None:
    started = app.start("chaining")
    assert set(started) >= {
        "id",
        "statusQueryGetUri",
        "sendEventPostUri",
        "terminatePostUri",
        "purgeHistoryDeleteUri",
    }
    done = app.wait(started)
    assert done["output"] == ["Hello Tokyo", "Hello Seattle", "Hello London"]
    r = app.status(started["statusQueryGetUri"])
    assert r.status_code == 200 and r.json()["runtimeStatus"] == "Completed"
    assert r.json()["createdTime"].endswith("Z")


def test_running_status_is_202_with_location(app: DurableApp) -> None:
    started = app.start("approval", 30)
    app.wait_status(started, "Running")
    r = app.status(started["statusQueryGetUri"])
    assert r.status_code == 202 and "Location" in r.headers
    assert r.json()["customStatus"] == "awaiting approval"
    app.client("terminate", started["id"], params={"reason": "cleanup"})
    assert app.wait(started)["runtimeStatus"] == "Terminated"


def test_status_urls_need_a_key(app: DurableApp) -> None:
    started = app.start("chaining")
    url = started["statusQueryGetUri"].split("&code=")[0]
    assert httpx.get(url).status_code == 401


def test_urls_default_to_the_loopback_base_and_the_system_key(app: DurableApp) -> None:
    # No PUBLIC_BASE_URL here: http://127.0.0.1:<port>, whatever Host and key the caller sent.
    r = httpx.post(
        app.rt.url("api/orchestrators/chaining"),
        params={"code": app.rt.master_key},
        headers={"Host": "evil.example"},
    )
    assert r.status_code == 202, r.text
    system_key = app.rt.keys()["systemKeys"]["durabletask_extension"]
    for key, url in r.json().items():
        if key != "id":
            assert url.startswith(f"{app.rt.base_url}/runtime/webhooks/durabletask/instances/"), url
            assert url.endswith(f"&code={system_key}"), url
    huge = httpx.get(
        app.rt.url("runtime/webhooks/durabletask/instances"), params={"code": system_key, "top": 10**30}
    )
    assert (huge.status_code, huge.json()) == (400, {"Message": "top must be a whole number from 1 to 1000"})
    app.wait(r.json())


def test_fan_out_200(app: DurableApp) -> None:
    assert app.wait(app.start("fan_out", 200))["output"] == sum(i * 2 for i in range(200))


def test_retry_succeeds_on_attempt_3(app: DurableApp) -> None:
    assert app.wait(app.start("retry_ok", "http-k"))["output"] == "ok on attempt 3"


def test_retry_exhausts(app: DurableApp) -> None:
    out = app.wait(app.start("retry_exhaust", "http-x"))["output"]
    assert out.startswith("caught:") and "flaky failure #3" in out


def test_timer(app: DurableApp) -> None:
    out = app.wait(app.start("timer", 1))["output"]
    assert out["waited"] >= 1 and out["after"] == "Hello after timer"


def test_external_event_via_sdk_client_arrives(app: DurableApp) -> None:
    started = app.start("approval", 30)
    app.wait_status(started, "Running")
    app.client("raise", started["id"], params={"name": "Approval"}, content=json.dumps({"ok": 1}))
    # Through the SDK client the orchestrator receives a JSON string (azure-functions-durable-python#295).
    assert app.wait(started)["output"] == {"approved": '{"ok": 1}'}


def test_external_event_via_raw_url_arrives_as_object(app: DurableApp) -> None:
    started = app.start("approval", 30)
    app.wait_status(started, "Running")
    url = started["sendEventPostUri"].replace("{eventName}", "Approval")
    assert httpx.post(url, json={"ok": True}).status_code == 202
    assert app.wait(started)["output"] == {"approved": {"ok": True}}


def test_external_event_times_out(app: DurableApp) -> None:
    assert app.wait(app.start("approval", 1))["output"] == "timeout"


def test_sub_orchestration(app: DurableApp) -> None:
    out = app.wait(app.start("parent"))["output"]
    assert out == {"first": ["Hello Tokyo", "Hello Seattle", "Hello London"], "second": 20}


def test_continue_as_new_1000_iterations_with_bounded_history(app: DurableApp) -> None:
    started = app.start("counter", {"n": 0, "limit": 1000})
    assert app.wait(started, timeout=240)["output"] == 1000
    status = app.client("status", started["id"], method="GET", params={"history": "1"})
    assert len(status["historyEvents"]) < 10


def test_suspend_resume_and_terminate(app: DurableApp) -> None:
    started = app.start("status_steps")
    app.wait_status(started, "Running")
    app.client("suspend", started["id"])
    app.wait_status(started, "Suspended")
    app.client("raise", started["id"], params={"name": "Go"}, content=b"null")
    assert app.status(started["statusQueryGetUri"]).json()["runtimeStatus"] == "Suspended"
    app.client("resume", started["id"])
    assert app.wait(started)["output"] == "done"
    assert app.status(started["statusQueryGetUri"]).json()["customStatus"] == {"step": 3}
    # A finished instance cannot be terminated: 410 from the API, so the SDK raises.
    term = httpx.post(started["terminatePostUri"].replace("{text}", "late"))
    assert term.status_code == 410


def test_purge(app: DurableApp) -> None:
    started = app.start("chaining")
    app.wait(started)
    assert app.client("purge", started["id"]) == 1
    assert app.status(started["statusQueryGetUri"]).status_code == 404
    assert app.client("status", started["id"], method="GET") is None


def test_listing_with_filters_and_continuation(app: DurableApp) -> None:
    running = app.start("approval", 60)
    done = app.start("chaining")
    app.wait(done)
    app.wait_status(running, "Running")
    listed = app.client("list", method="GET", params={"status": "Running"})
    assert running["id"] in listed and done["id"] not in listed
    assert done["id"] in app.client("all", method="GET")
    # Raw API paging with top + x-ms-continuation-token.
    base = running["statusQueryGetUri"].split("/instances/")[0] + "/instances"
    code = running["statusQueryGetUri"].split("code=")[1]
    seen: list[str] = []
    token = None
    while True:
        headers = {"x-ms-continuation-token": token} if token else {}
        r = httpx.get(base, params={"code": code, "top": "3"}, headers=headers)
        page = r.json()
        assert len(page) <= 3
        seen += [p["instanceId"] for p in page]
        token = r.headers.get("x-ms-continuation-token")
        if not token:
            break
    assert len(seen) == len(set(seen)) and {running["id"], done["id"]} <= set(seen)
    httpx.post(running["terminatePostUri"].replace("{text}", "done"))


def test_custom_status_over_16kb_fails_clearly(app: DurableApp) -> None:
    done = app.wait(app.start("big_status"))
    assert done["runtimeStatus"] == "Failed" and "16 KB" in done["output"]


def test_history_is_shown_in_extension_format(app: DurableApp) -> None:
    started = app.start("chaining")
    app.wait(started)
    r = httpx.get(started["statusQueryGetUri"] + "&showHistory=true&showHistoryOutput=true")
    kinds = [e["EventType"] for e in r.json()["historyEvents"]]
    assert kinds[0] == "ExecutionStarted" and kinds[-1] == "ExecutionCompleted"
    completed = [e for e in r.json()["historyEvents"] if e["EventType"] == "TaskCompleted"]
    assert completed[0]["FunctionName"] == "hello" and completed[0]["Result"] == "Hello Tokyo"


def test_restart(app: DurableApp) -> None:
    started = app.start("chaining")
    app.wait(started)
    restarted = app.client("restart", started["id"])
    # The SDK returns the extension's 202 body: the new instance's id and management URLs.
    assert isinstance(restarted, dict) and restarted["id"] != started["id"]
    again = app.wait(restarted)
    assert again["name"] == "chaining" and again["output"] == ["Hello Tokyo", "Hello Seattle", "Hello London"]


def test_wait_for_completion_response(app: DurableApp) -> None:
    started = app.start("chaining")
    r = httpx.post(app.rt.url(f"api/client/wait/{started['id']}"), headers={"x-functions-key": app.key})
    assert r.status_code == 200 and r.json() == ["Hello Tokyo", "Hello Seattle", "Hello London"]


class _AsyncPattern(BaseHTTPRequestHandler):
    polls = 0

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        if self.path == "/start":
            self.send_response(202)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/poll")
            self.send_header("Retry-After", "0")
            self.end_headers()
        elif _AsyncPattern.polls < 2:
            _AsyncPattern.polls += 1
            self.send_response(202)
            self.send_header("Location", f"http://127.0.0.1:{self.server.server_port}/poll")
            self.end_headers()
        else:
            body = b"finished"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_call_http_follows_202_polling(app: DurableApp) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AsyncPattern)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        out = app.wait(app.start("http_call", f"http://127.0.0.1:{server.server_port}/start"))["output"]
        assert out == {"status": 200, "content": "finished"}
        assert _AsyncPattern.polls == 2
    finally:
        server.shutdown()
        server.server_close()


def test_unknown_orchestrator_is_a_clear_500_from_the_starter(app: DurableApp) -> None:
    r = httpx.post(app.rt.url("api/orchestrators/nope"), params={"code": app.key})
    assert r.status_code == 500 and "Traceback" not in r.text
    assert "doesn't exist" in app.rt.log_text()
