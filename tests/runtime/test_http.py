"""The real runtime process serving tests/apps/http_app: routes, keys, responses, failures, lock, keys.

One runtime is shared by the module (starting one costs about a second); tests that need their
own process (lock, restart, start-up errors) start it themselves.
"""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest

from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime

APPS = Path(__file__).resolve().parents[1] / "apps"
HTTP_APP = APPS / "http_app"
BODY_LIMIT = 4096
ENV = {"AzureWebJobs.switched_off.Disabled": "true", "FUNCTIONS_REQUEST_BODY_SIZE_LIMIT": str(BODY_LIMIT)}


@pytest.fixture(scope="module")
def rt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RuntimeProcess]:
    runtime = RuntimeProcess(HTTP_APP, tmp_path_factory.mktemp("http") / "state", env=ENV).start()
    try:
        yield runtime
    finally:
        runtime.stop()


@pytest.fixture(scope="module")
def client(rt: RuntimeProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=rt.base_url, timeout=30) as c:
        yield c


@pytest.fixture(scope="module")
def fkey(rt: RuntimeProcess) -> dict[str, str]:
    return {"x-functions-key": rt.function_key}


# --- routing -------------------------------------------------------------------------------------


def test_int_constraint_and_name_order(client: httpx.Client, fkey: dict[str, str]) -> None:
    by_id = client.get("/api/items/42", headers=fkey).json()
    assert by_id == {"function": "item_by_id", "route_params": {"id": "42"}}
    by_name = client.get("/api/ITEMS/abc", headers=fkey).json()
    assert by_name == {"function": "item_by_name", "route_params": {"name": "abc"}}


def test_optional_parameter(client: httpx.Client, fkey: dict[str, str]) -> None:
    assert client.get("/api/opt", headers=fkey).json() == {"route_params": {}}
    assert client.get("/api/opt/7", headers=fkey).json() == {"route_params": {"id": "7"}}


def test_catch_all(client: httpx.Client, fkey: dict[str, str]) -> None:
    assert client.get("/api/files/a/b/c.txt", headers=fkey).json() == {"route_params": {"path": "a/b/c.txt"}}
    assert client.get("/api/files", headers=fkey).json() == {"route_params": {}}


def test_wrong_method_and_unknown_route_are_404(client: httpx.Client, fkey: dict[str, str]) -> None:
    assert client.get("/api/hello", headers=fkey).status_code == 200
    wrong = client.delete("/api/hello", headers=fkey)
    assert (wrong.status_code, wrong.content) == (404, b"")
    assert client.get("/api/no-such-route", headers=fkey).status_code == 404
    assert client.get("/hello", headers=fkey).status_code == 404  # outside the route prefix


# --- keys and auth levels -----------------------------------------------------------------------


def test_function_level_needs_a_key(client: httpx.Client, rt: RuntimeProcess) -> None:
    no_key = client.get("/api/hello")
    assert (no_key.status_code, no_key.content) == (401, b"")
    assert client.get("/api/hello", headers={"x-functions-key": "wrong"}).status_code == 401
    assert client.get("/api/hello", params={"code": "wrong"}).status_code == 401
    # The durabletask system key is not a function key.
    assert (
        client.get(
            "/api/hello", params={"code": rt.keys()["systemKeys"]["durabletask_extension"]}
        ).status_code
        == 401
    )


def test_function_key_in_header_or_code_and_master_key(client: httpx.Client, rt: RuntimeProcess) -> None:
    by_header = client.get("/api/hello", params={"name": "ada"}, headers={"x-functions-key": rt.function_key})
    assert (by_header.status_code, by_header.text) == (200, "Hello, ada")
    assert client.get("/api/hello", params={"code": rt.function_key}).status_code == 200
    assert client.get("/api/hello", params={"code": rt.master_key}).status_code == 200
    # The header wins over `code`: a wrong header is not rescued by a right code.
    mixed = client.get("/api/hello", params={"code": rt.function_key}, headers={"x-functions-key": "wrong"})
    assert mixed.status_code == 401


def test_admin_level_needs_the_master_key(client: httpx.Client, rt: RuntimeProcess) -> None:
    assert client.get("/api/restricted", params={"code": rt.function_key}).status_code == 401
    ok = client.get("/api/restricted", params={"code": rt.master_key})
    assert (ok.status_code, ok.text) == (200, "admin ok")


def test_anonymous_needs_no_key_and_ignores_a_wrong_one(client: httpx.Client) -> None:
    assert client.get("/api/open").text == "open ok"
    assert client.get("/api/open", params={"code": "wrong"}).status_code == 200


def test_disabled_function_is_404_except_for_the_master_key(client: httpx.Client, rt: RuntimeProcess) -> None:
    assert client.get("/api/switched-off", params={"code": rt.function_key}).status_code == 404
    assert client.get("/api/switched-off", params={"code": rt.master_key}).status_code == 200


def test_keys_file_is_private(rt: RuntimeProcess) -> None:
    assert stat.S_IMODE((rt.state_dir / "keys.json").stat().st_mode) == 0o600


# --- requests and responses ---------------------------------------------------------------------


def test_request_folding_end_to_end(client: httpx.Client, fkey: dict[str, str]) -> None:
    resp = client.post(
        "/api/echo?q=1&q=2&empty=",
        headers=[("X-Multi", "a"), ("x-multi", "b"), ("x-functions-key", fkey["x-functions-key"])],
        content=b"payload",
    )
    assert resp.status_code == 201
    data = resp.json()
    assert data["method"] == "POST"
    assert data["headers"]["x-multi"] == "a,b"
    assert data["params"] == {"q": "1,2"}
    assert data["body"] == "payload"
    assert data["url"].endswith("/api/echo?q=1&q=2&empty=")


def test_sync_and_async_functions(client: httpx.Client, fkey: dict[str, str]) -> None:
    sync = client.get("/api/hello", headers=fkey)
    assert (sync.text, sync.headers["content-type"]) == ("Hello, world", "text/plain; charset=utf-8")
    resp = client.get("/api/async-hello", headers=fkey)
    assert (resp.status_code, resp.text, resp.headers["x-kind"]) == (200, "async ok", "async")


def test_str_return_values(client: httpx.Client, fkey: dict[str, str]) -> None:
    plain = client.get("/api/plain", headers=fkey)
    assert (plain.status_code, plain.text) == (200, "just a string")
    obj = client.get("/api/response-object", headers=fkey)
    assert (obj.status_code, obj.headers["x-from"], obj.json()) == (202, "object", {"ok": True})


def test_none_is_204(client: httpx.Client, fkey: dict[str, str]) -> None:
    resp = client.get("/api/nothing", headers=fkey)
    assert (resp.status_code, resp.content) == (204, b"")


def test_context_parameter(client: httpx.Client, fkey: dict[str, str]) -> None:
    data = client.get("/api/with-context", headers=fkey).json()
    assert data["function_name"] == "with_context" and len(data["invocation_id"]) == 36


def test_unhandled_exception_is_a_bare_500_and_logged(
    client: httpx.Client, fkey: dict[str, str], rt: RuntimeProcess
) -> None:
    resp = client.get("/api/boom", headers=fkey)
    assert resp.status_code == 500
    assert b"kaboom" not in resp.content and b"Traceback" not in resp.content
    log = wait_until(lambda: rt.log_text() if "kaboom-secret-detail" in rt.log_text() else "", timeout=10)
    assert "Executed 'Functions.boom' (Failed" in log
    assert "Traceback (most recent call last)" in log


def test_body_over_the_limit_is_413(client: httpx.Client, fkey: dict[str, str]) -> None:
    assert client.post("/api/echo", headers=fkey, content=b"x" * BODY_LIMIT).status_code == 201
    assert client.post("/api/echo", headers=fkey, content=b"x" * (BODY_LIMIT + 1)).status_code == 413


def test_function_timeout_is_a_500_and_logged(
    client: httpx.Client, fkey: dict[str, str], rt: RuntimeProcess
) -> None:
    resp = client.get("/api/slow", params={"s": "4"}, headers=fkey)  # host.json functionTimeout: 2 s
    assert resp.status_code == 500
    wait_until(
        lambda: "Timeout value of 2.0s exceeded by function 'Functions.slow'" in rt.log_text(), timeout=10
    )


# --- built-in routes ----------------------------------------------------------------------------


def test_admin_routes(client: httpx.Client, rt: RuntimeProcess) -> None:
    assert client.get("/admin/host/ping").status_code == 200
    assert client.get("/admin/host/status").status_code == 401
    assert client.get("/admin/host/status", params={"code": rt.function_key}).status_code == 401
    status = client.get("/admin/host/status", headers={"x-functions-key": rt.master_key}).json()
    assert status["state"] == "Running" and "hello" in status["functions"]
    master = {"x-functions-key": rt.master_key}
    assert client.post("/admin/functions/hello", json={"input": "x"}).status_code == 401
    assert client.post("/admin/functions/nope", json={"input": "x"}, headers=master).status_code == 404
    assert client.post("/admin/functions/hello", json={"input": "x"}, headers=master).status_code == 400


def test_durable_webhooks_need_the_system_or_master_key(client: httpx.Client, rt: RuntimeProcess) -> None:
    system_key = rt.keys()["systemKeys"]["durabletask_extension"]
    assert client.get("/runtime/webhooks/durabletask/instances/x").status_code == 401
    assert (
        client.get("/runtime/webhooks/durabletask/instances/x", params={"code": rt.function_key}).status_code
        == 401
    )
    # This app has no durable functions, so an authorised call finds nothing.
    assert (
        client.get("/runtime/webhooks/durabletask/instances/x", params={"code": system_key}).status_code
        == 404
    )
    assert (
        client.get("/runtime/webhooks/durabletask/instances/x", params={"code": rt.master_key}).status_code
        == 404
    )
    assert client.get("/runtime/rpc/wrong/durabletask/instances/x").status_code == 401
    assert client.get(f"/runtime/rpc/{system_key}/durabletask/instances/x").status_code == 404


def test_listens_on_loopback_only(rt: RuntimeProcess) -> None:
    assert rt.process is not None
    listening = [
        c
        for c in psutil.Process(rt.process.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    assert listening and {c.laddr.ip for c in listening} == {"127.0.0.1"}


# --- process-level behaviour --------------------------------------------------------------------


def test_second_runtime_on_the_same_state_folder_exits_2(rt: RuntimeProcess) -> None:
    second = RuntimeProcess(HTTP_APP, rt.state_dir, env=ENV, port=None)
    second.log_path = rt.state_dir.parent / "second-runtime.log"
    second.start(wait=False)
    assert second.process is not None
    try:
        assert second.process.wait(timeout=30) == 2
    finally:
        second.stop()
    assert rt.process is not None
    expected = f"another runtime is already using state folder {rt.state_dir} (pid {rt.process.pid})"
    assert expected in second.log_text()
    assert "Traceback" not in second.log_text()
    assert httpx.get(rt.url("admin/host/ping")).status_code == 200  # the first one is unharmed


def test_keys_persist_across_restart_and_sigterm_stops_cleanly(tmp_path: Path) -> None:
    first = RuntimeProcess(HTTP_APP, tmp_path / "state").start()
    keys = first.keys()
    assert first.process is not None
    os.killpg(first.process.pid, signal.SIGTERM)
    assert first.process.wait(timeout=20) == 0
    first.stop()
    assert "Host stopped" in first.log_text()
    second = RuntimeProcess(HTTP_APP, tmp_path / "state").start()
    try:
        assert second.keys() == keys
        assert (
            httpx.get(second.url("api/hello"), params={"code": keys["functionKeys"]["default"]}).status_code
            == 200
        )
    finally:
        second.stop()


def test_banner_lists_urls_and_where_the_keys_are(rt: RuntimeProcess) -> None:
    text = rt.log_text()
    assert f"hello: [GET] http://127.0.0.1:{rt.port}/api/hello (authLevel: function)" in text
    assert "keys.json" in text
    assert rt.master_key not in text and rt.function_key not in text  # the log never holds keys


@pytest.mark.parametrize(
    ("app", "message"), [("bad_two_apps", "defines 2 function apps"), ("bad_import_error", "DATABASE_URL")]
)
def test_indexing_error_exits_1_with_a_message_and_no_traceback(
    tmp_path: Path, app: str, message: str
) -> None:
    proc = RuntimeProcess(APPS / app, tmp_path / "state").start(wait=False)
    assert proc.process is not None
    try:
        assert proc.process.wait(timeout=30) == 1
    finally:
        proc.stop()
    assert message in proc.log_text()
    assert "Traceback" not in proc.log_text()
