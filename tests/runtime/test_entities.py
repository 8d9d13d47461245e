"""Durable entities end to end: the Counter entity of tests/apps/durable_app (Microsoft's sample
shape: add/reset/get) called and signalled by orchestrations, signalled and read by the SDK
client, in-process on both stores and through the runtime process over HTTP, and across a
SIGKILL of the runtime.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from selfhost.durable.sqlite_store import SqliteStore
from tests.support.apps import app_root, load_app_module
from tests.support.durable_client import DurableApp, running_durable_app
from tests.support.durable_harness import EngineHarness
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = pytest.mark.runtime


# --------------------------------------------------------------------------------------------
# in-process (real SDK, no HTTP)
# --------------------------------------------------------------------------------------------


def signal(h: EngineHarness, key: str, op: str, value: Any = None) -> None:
    # The body the SDK client posts is json.dumps(json.dumps(value)); the API stores it re-serialized.
    h.engine.signal_entity("Counter", key, op, "null" if value is None else json.dumps(json.dumps(value)))


def state_of(h: EngineHarness, key: str) -> Any:
    status = h.engine.read_entity("Counter", key)
    return json.loads(status.state) if status.exists and status.state is not None else None


def wait_state(h: EngineHarness, key: str, expected: Any, timeout: float = 20) -> None:
    wait_until(lambda: state_of(h, key) == expected, timeout=timeout, interval=0.02,
               message=f"Counter/{key} == {expected!r} (is {state_of(h, key)!r})")  # fmt: skip


def test_orchestration_calls_and_signals_an_entity(harness: EngineHarness) -> None:
    iid = harness.start("entity_calls", "k1")
    assert harness.output(iid) == {"value": 15, "error": "boom at 15", "after": 0}
    assert state_of(harness, "k1") == 0
    history = [json.loads(e) for e in harness.store.get_history(iid)]
    assert [e["EventId"] for e in history if e["EventType"] == 14] == list(range(6))  # EventSent


def test_client_signals_are_applied_in_order(harness: EngineHarness) -> None:
    signal(harness, "order", "add", 5)
    signal(harness, "order", "reset")
    for i in range(1, 51):
        signal(harness, "order", "add", i)
    wait_state(harness, "order", sum(range(1, 51)))
    assert harness.engine.read_entity("counter", "order").exists  # names are case-insensitive


def test_operations_on_one_entity_never_interleave(harness: EngineHarness) -> None:
    ids = [harness.start("entity_adder", {"key": "shared", "n": 25}) for _ in range(6)]
    for _ in range(50):
        signal(harness, "shared", "add", 1)
    results = [harness.output(i, timeout=60) for i in ids]
    wait_state(harness, "shared", 6 * 25 + 50)
    assert max(results) <= 200 and all(r >= 25 for r in results)


def test_unknown_entity(harness: EngineHarness) -> None:
    assert not harness.engine.read_entity("Counter", "never-touched").exists
    iid = harness.start("entity_unknown")
    inst = harness.wait(iid)
    assert inst.status == "Failed" and "'nosuchentity' doesn't exist" in (inst.output or "")


def test_entity_state_survives_a_store_reopen(tmp_path: Path) -> None:
    with EngineHarness(load_app_module("durable_app").app, SqliteStore(tmp_path / "hub.sqlite3")) as h:
        signal(h, "kept", "add", 42)
        wait_state(h, "kept", 42)
    with EngineHarness(load_app_module("durable_app").app, SqliteStore(tmp_path / "hub.sqlite3")) as h:
        assert state_of(h, "kept") == 42
        signal(h, "kept", "add", 1)
        wait_state(h, "kept", 43)


# --------------------------------------------------------------------------------------------
# through the runtime process and the SDK client
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DurableApp]:
    with running_durable_app(tmp_path_factory.mktemp("durable-entities") / "state") as client:
        yield client


def sdk_signal(
    app: DurableApp, key: str, op: str, value: Any = None, name: str = "Counter"
) -> httpx.Response:
    body = b"" if value is None else json.dumps(value).encode()
    return app.http.post(app.rt.url(f"api/entity/{name}/{key}"), params={"op": op},
                         headers={"x-functions-key": app.key}, content=body)  # fmt: skip


def sdk_read(app: DurableApp, key: str) -> dict[str, Any]:
    r = app.http.get(app.rt.url(f"api/entity/Counter/{key}"), headers={"x-functions-key": app.key})
    assert r.status_code == 200, r.text
    return dict(r.json())


def sdk_wait_state(app: DurableApp, key: str, expected: Any, timeout: float = 30) -> None:
    wait_until(lambda: sdk_read(app, key) == {"exists": True, "state": expected}, timeout=timeout, interval=0.05,
               message=f"Counter/{key} == {expected!r} (is {sdk_read(app, key)!r})")  # fmt: skip


def test_sdk_client_signal_and_read_state(app: DurableApp) -> None:
    assert sdk_read(app, "http-1") == {"exists": False, "state": None}
    for value in (3, 4, 5):
        assert sdk_signal(app, "http-1", "add", value).status_code == 202
    sdk_wait_state(app, "http-1", 12)
    assert sdk_signal(app, "http-1", "reset").status_code == 202
    sdk_wait_state(app, "http-1", 0)


def test_management_api_entity_routes(app: DurableApp) -> None:
    status_url = app.start("chaining")["statusQueryGetUri"]
    base, query = status_url.split("/instances/")[0], status_url.split("?", 1)[1]
    assert httpx.get(f"{base}/entities/Counter/unknown-key?{query}").status_code == 404
    # A raw caller must post what the SDK client posts, a JSON string holding JSON text: the
    # Python entity's get_input decodes twice (a plain `7` makes it raise, on Azure as here).
    r = httpx.post(f"{base}/entities/Counter/raw?op=add&{query}", json=json.dumps(7))
    assert r.status_code == 202
    wait_until(lambda: httpx.get(f"{base}/entities/counter/raw?{query}").status_code == 200, timeout=30)
    r = httpx.get(f"{base}/entities/counter/raw?{query}")
    assert r.json() == 7 and r.headers["content-type"].startswith("application/json")
    assert httpx.post(f"{base}/entities/Ghost/k?op=add&{query}", json=1).status_code == 400
    assert httpx.post(f"{base}/orchestrators/chaining/@counter@raw?{query}").status_code == 400
    # Entities are instances internally but are not listed as orchestrations.
    assert not any(i.startswith("@") for i in app.client("all", method="GET"))


def test_signal_to_unknown_entity_raises_in_the_sdk_client(app: DurableApp) -> None:
    assert sdk_signal(app, "k", "add", 1, name="Ghost").status_code == 500


def test_orchestration_calls_and_signals_over_http(app: DurableApp) -> None:
    done = app.wait(app.start("entity_calls", "http-orch"))
    assert done["runtimeStatus"] == "Completed"
    assert done["output"] == {"value": 15, "error": "boom at 15", "after": 0}
    assert sdk_read(app, "http-orch") == {"exists": True, "state": 0}


def test_concurrent_orchestrations_and_signals_on_one_entity(app: DurableApp) -> None:
    started = [app.start("entity_adder", {"key": "http-shared", "n": 10}) for _ in range(4)]
    for _ in range(20):
        assert sdk_signal(app, "http-shared", "add", 1).status_code == 202
    assert all(app.wait(s)["runtimeStatus"] == "Completed" for s in started)
    sdk_wait_state(app, "http-shared", 60)


def test_unknown_entity_fails_the_orchestration(app: DurableApp) -> None:
    done = app.wait(app.start("entity_unknown"))
    assert done["runtimeStatus"] == "Failed" and "is not an entity function" in done["output"]


# --------------------------------------------------------------------------------------------
# crash safety
# --------------------------------------------------------------------------------------------


def queued_messages(rt: RuntimeProcess, instance_id: str) -> int:
    db = sqlite3.connect(next((rt.state_dir / "durable").glob("*.sqlite3")))
    try:
        return int(
            db.execute("SELECT COUNT(*) FROM messages WHERE instance_id=?", (instance_id,)).fetchone()[0]
        )
    finally:
        db.close()


@pytest.mark.slow
def test_kill_loses_no_accepted_signal_and_state_persists(tmp_path: Path) -> None:
    rt = RuntimeProcess(app_root("durable_app"), tmp_path / "state")
    rt.start()
    app = DurableApp(rt)
    try:
        for _ in range(5):
            assert sdk_signal(app, "crash", "add", 100).status_code == 202
        sdk_wait_state(app, "crash", 500)
        # A burst of accepted signals (20 ms each to apply) and a waiting orchestration, then
        # SIGKILL at once: signals are still queued and a batch is mid-flight.
        accepted = 0
        for _ in range(150):
            accepted += sdk_signal(app, "crash", "add_slowly", 1).status_code == 202
        assert accepted == 150
        started = app.start("entity_adder", {"key": "crash", "n": 5})
        rt.kill()
        pending = queued_messages(rt, "@counter@crash")
        assert pending > 0, "every signal was applied before the kill; the test proves nothing"
        rt.start()
        # Every accepted signal applied exactly once (batches commit atomically with their
        # consumption), the orchestration finishes, and the state survived the restart.
        assert app.wait(started, timeout=60)["runtimeStatus"] == "Completed"
        sdk_wait_state(app, "crash", 500 + 150 + 5)
        time.sleep(0.5)
        assert sdk_read(app, "crash") == {"exists": True, "state": 655}
        rt.stop()
        rt.start()
        assert sdk_read(app, "crash") == {"exists": True, "state": 655}
    finally:
        app.http.close()
        rt.stop()


# --------------------------------------------------------------------------------------------
# rewind (here because this task owns only these new test files)
# --------------------------------------------------------------------------------------------


def calls_of(h: EngineHarness, name: str) -> list[Any]:
    return [v for n, v in h.invoker.calls if n == name]


def rewind_and_wait(h: EngineHarness, iid: str, reason: str) -> None:
    """Rewind and wait until the engine took it (the history always changes), not for the end."""
    before = h.store.get_history(iid)
    h.engine.control(iid, "rewind", reason)
    wait_until(lambda: h.store.get_history(iid) != before, timeout=10, message=f"{iid} rewound")


def test_rewind_reruns_the_failed_activity_and_continues(harness: EngineHarness) -> None:
    iid = harness.start("rewindable", "rw-1")
    assert harness.wait(iid).status == "Failed"
    rewind_and_wait(harness, iid, "fixed")
    assert harness.output(iid) == ["Hello before rw-1", "ok on attempt 2"]
    assert calls_of(harness, "hello") == ["before rw-1"]  # completed calls are not redone
    assert len(calls_of(harness, "flaky")) == 2


def test_rewind_fan_out_and_sub_orchestration(harness: EngineHarness) -> None:
    iid = harness.start("rewindable_parent", "rw-p", instance_id="rw-p")
    assert harness.wait(iid).status == "Failed"  # the fan-out's first failure
    rewind_and_wait(harness, iid, "first")
    failed = harness.wait(iid)  # now the child fails
    assert failed.status == "Failed" and "Orchestrator function 'rewindable' failed" in (failed.output or "")
    assert harness.wait("rw-p-child").status == "Failed"
    rewind_and_wait(harness, iid, "second")  # rewinds the child too
    assert harness.output(iid) == {
        "fanned": ["ok on attempt 2"] * 3,
        "child": ["Hello before rw-p-child", "ok on attempt 2"],
    }
    assert harness.wait("rw-p-child").status == "Completed"


def test_rewind_of_a_failure_in_orchestrator_code_replays_it(harness: EngineHarness) -> None:
    iid = harness.start("fails")
    first = harness.wait(iid)
    rewind_and_wait(harness, iid, "same code")
    again = harness.wait(iid)
    assert again.status == "Failed" and again.output == first.output
    assert calls_of(harness, "hello") == ["before"]


def rewind(app: DurableApp, instance_id: str) -> httpx.Response:
    return app.http.post(app.rt.url(f"api/rewind/{instance_id}"), params={"reason": "fixed it"},
                         headers={"x-functions-key": app.key})  # fmt: skip


def test_sdk_client_rewind(app: DurableApp) -> None:
    started = app.start("rewindable", "http-rw")
    assert app.wait(started)["runtimeStatus"] == "Failed"
    assert rewind(app, started["id"]).status_code == 202
    done = app.wait_status(started, "Completed")  # (it is still Failed until the engine takes the rewind)
    assert done["output"] == ["Hello before http-rw", "ok on attempt 2"]
    history = app.client("status", started["id"], method="GET", params={"history": "1"})["historyEvents"]
    assert [e["EventType"] for e in history].count("GenericEvent") == 1
    # Not failed: 410, which the SDK reports as an exception.
    r = rewind(app, started["id"])
    assert r.status_code == 409 and "only supported on failed" in r.text


def test_rewind_refuses_what_it_cannot_undo(app: DurableApp) -> None:
    started = app.start("unknown_activity")
    assert app.wait(started)["runtimeStatus"] == "Failed"
    r = rewind(app, started["id"])
    assert r.status_code == 409 and "cannot be rewound" in r.text and "no_such_activity" in r.text
    assert app.status(started["statusQueryGetUri"]).json()["runtimeStatus"] == "Failed"
