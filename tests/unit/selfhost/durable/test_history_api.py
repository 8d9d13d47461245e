"""Management API payload shapes (durable-protocol.md §4): `public_history` folding and the
management URLs, plus the status route that serves them (driven with mocked aiohttp requests,
no server)."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from selfhost.durable import history as h
from selfhost.durable.api import ManagementApi, public_history
from selfhost.durable.history import OrchestrationStatus
from selfhost.durable.memory_store import MemoryStore
from selfhost.durable.store import Instance, Message
from tests.support.history_builders import T0, at

pytestmark = pytest.mark.unit

Event = dict[str, Any]


def ts(seconds: float) -> str:
    return h.fmt_time(at(seconds))


def sample_history() -> list[Event]:
    """A complete execution as the engine writes it: activity, timer, sub-orchestration, a failed
    activity, a raised event, suspend/resume, completion, and one activity never completed."""
    return [
        h.orchestrator_started(at(0)),
        h.execution_started(
            at(0), name="o", instance_id="i1", execution_id="e1", input_text='"{\\"x\\": 1}"'
        ),
        h.task_scheduled(at(0), 0, "hello", '"Tokyo"'),
        h.orchestrator_completed(at(0)),
        h.orchestrator_started(at(1)),
        h.task_completed(at(1), 0, '"Hello Tokyo"'),
        h.timer_created(at(1), 1, at(6)),
        h.orchestrator_completed(at(1)),
        h.orchestrator_started(at(6)),
        h.timer_fired(at(6), 1, ts(6)),
        h.sub_orchestration_created(at(6), 2, "sub", "kid", '"in"'),
        h.task_scheduled(at(6), 3, "flaky", "1"),
        h.task_scheduled(at(6), 4, "never", "null"),
        h.orchestrator_completed(at(6)),
        h.orchestrator_started(at(7)),
        h.task_failed(at(7), 3, "Activity function 'flaky' failed: RuntimeError: x", "Traceback..."),
        h.orchestrator_completed(at(7)),
        h.execution_suspended(at(7.5), "pause"),
        h.execution_resumed(at(7.7), "go"),
        h.orchestrator_started(at(8)),
        h.sub_orchestration_completed(at(8), 2, '{"r": 1}'),
        h.event_raised(at(8), "Approval", '{"ok": true}'),
        h.execution_completed(at(8), OrchestrationStatus.Completed, '["a", 1]'),
        h.orchestrator_completed(at(8)),
    ]


def test_public_history_full_shape_with_output_and_input() -> None:
    out = public_history(sample_history(), show_output=True, show_input=True)
    assert out == [
        {
            "EventType": "ExecutionStarted", "Timestamp": ts(0), "FunctionName": "o", "Version": "",
            "Input": '"{\\"x\\": 1}"', "OrchestrationInstance": {"InstanceId": "i1", "ExecutionId": "e1"},
            "ParentInstance": None, "Tags": None,
        },
        {
            "EventType": "TaskCompleted", "Timestamp": ts(1), "Result": "Hello Tokyo",
            "FunctionName": "hello", "ScheduledTime": ts(0), "Input": '"Tokyo"',
        },
        {"EventType": "TimerCreated", "Timestamp": ts(1), "FireAt": ts(6)},
        {"EventType": "TimerFired", "Timestamp": ts(6), "FireAt": ts(6)},
        {
            "EventType": "TaskFailed", "Timestamp": ts(7),
            "Reason": "Activity function 'flaky' failed: RuntimeError: x", "Details": "Traceback...",
            "FailureDetails": None, "FunctionName": "flaky", "ScheduledTime": ts(6), "Input": "1",
        },
        {"EventType": "ExecutionSuspended", "Timestamp": ts(7.5), "Reason": "pause"},
        {"EventType": "ExecutionResumed", "Timestamp": ts(7.7), "Reason": "go"},
        {
            "EventType": "SubOrchestrationInstanceCompleted", "Timestamp": ts(8), "Result": {"r": 1},
            "FunctionName": "sub", "ScheduledTime": ts(6), "Input": '"in"',
        },
        {"EventType": "EventRaised", "Timestamp": ts(8), "Name": "Approval", "Input": '{"ok": true}'},
        {
            "EventType": "ExecutionCompleted", "Timestamp": ts(8), "OrchestrationStatus": "Completed",
            "Result": ["a", 1], "FailureDetails": None,
        },
        # scheduled but never completed: listed at the end
        {"EventType": "TaskScheduled", "FunctionName": "never", "Timestamp": ts(6)},
    ]  # fmt: skip


def test_public_history_hides_ids_and_orchestrator_frames() -> None:
    out = public_history(sample_history(), show_output=True, show_input=True)
    for item in out:
        assert not {"EventId", "IsPlayed", "TaskScheduledId", "TimerId"} & set(item), item
        assert isinstance(item["EventType"], str)
    names = [e["EventType"] for e in out]
    assert "OrchestratorStarted" not in names and "OrchestratorCompleted" not in names
    assert "SubOrchestrationInstanceCreated" not in names
    assert names.count("TaskScheduled") == 1  # only the pending one


def test_public_history_without_output_drops_every_result() -> None:
    out = public_history(sample_history(), show_output=False, show_input=True)
    assert all("Result" not in e for e in out)
    completed = next(e for e in out if e["EventType"] == "ExecutionCompleted")
    assert completed["OrchestrationStatus"] == "Completed"
    assert next(e for e in out if e["EventType"] == "TaskCompleted")["Input"] == '"Tokyo"'


def test_public_history_without_input_drops_scheduled_and_start_inputs() -> None:
    out = public_history(sample_history(), show_output=True, show_input=False)
    started = out[0]
    assert (
        started["EventType"] == "ExecutionStarted"
        and "Input" not in started
        and started["FunctionName"] == "o"
    )
    for kind in ("TaskCompleted", "TaskFailed", "SubOrchestrationInstanceCompleted"):
        item = next(e for e in out if e["EventType"] == kind)
        assert "Input" not in item and "FunctionName" in item and "ScheduledTime" in item
    # the input the events carry themselves (raised event data) stays
    assert next(e for e in out if e["EventType"] == "EventRaised")["Input"] == '{"ok": true}'


def test_public_history_result_parsing() -> None:
    events = [
        h.task_scheduled(T0, 0, "a", None),
        h.task_completed(T0, 0, "not json"),
        h.task_scheduled(T0, 1, "a", None),
        h.task_completed(T0, 1, None),
        h.task_scheduled(T0, 2, "a", None),
        h.task_completed(T0, 2, "0"),
    ]
    out = public_history(events, show_output=True, show_input=False)
    assert [e["Result"] for e in out] == ["not json", None, 0]


@pytest.mark.parametrize(
    ("status", "name"),
    [(s, s.name) for s in OrchestrationStatus],
)
def test_public_history_orchestration_status_names(status: OrchestrationStatus, name: str) -> None:
    (item,) = public_history([h.execution_completed(T0, status, '"r"')], show_output=True, show_input=True)
    assert item["OrchestrationStatus"] == name and item["Result"] == "r"


def test_public_history_terminated_and_failed_sub_orchestration() -> None:
    events = [
        h.sub_orchestration_created(at(0), 0, "sub", "kid", "null"),
        h.sub_orchestration_failed(at(1), 0, "Orchestrator function 'sub' failed: x", None),
        h.orchestrator_started(at(2)),
        h.execution_terminated(at(2), "enough"),
        h.execution_completed(at(2), OrchestrationStatus.Terminated, '"enough"'),
        h.orchestrator_completed(at(2)),
    ]
    out = public_history(events, show_output=True, show_input=True)
    assert [e["EventType"] for e in out] == [
        "SubOrchestrationInstanceFailed", "ExecutionTerminated", "ExecutionCompleted",
    ]  # fmt: skip
    failed = out[0]
    assert (failed["FunctionName"], failed["ScheduledTime"], failed["Input"]) == ("sub", ts(0), "null")
    assert failed["Reason"] == "Orchestrator function 'sub' failed: x"
    assert out[1]["Input"] == "enough"
    assert out[2]["OrchestrationStatus"] == "Terminated" and out[2]["Result"] == "enough"


def test_public_history_retry_sequence_folds_each_attempt() -> None:
    events = [
        h.task_scheduled(at(0), 0, "flaky", '"s"'),
        h.task_failed(at(1), 0, "r1", "d1"),
        h.timer_created(at(1), 1, at(2)),
        h.timer_fired(at(2), 1, ts(2)),
        h.task_scheduled(at(2), 2, "flaky", '"s"'),
        h.task_completed(at(3), 2, '"ok"'),
    ]
    out = public_history(events, show_output=True, show_input=True)
    assert [(e["EventType"], e.get("ScheduledTime")) for e in out] == [
        ("TaskFailed", ts(0)), ("TimerCreated", None), ("TimerFired", None), ("TaskCompleted", ts(2)),
    ]  # fmt: skip
    assert out[-1]["Result"] == "ok" and out[-1]["FunctionName"] == "flaky"


def test_public_history_does_not_mutate_its_input() -> None:
    events = sample_history()
    snapshot = json.loads(json.dumps(events))
    public_history(events, show_output=True, show_input=False)
    assert events == snapshot


# --------------------------------------------------------------------------------------------
# management URLs
# --------------------------------------------------------------------------------------------

BASE = "http://localhost:7071/runtime/webhooks/durabletask"


def api(hub: str = "TestHubName", store: MemoryStore | None = None) -> ManagementApi:
    engine: Any = SimpleNamespace(store=store or MemoryStore())
    return ManagementApi(engine, hub, public_base=lambda: "http://localhost:7071", code=lambda: "SYS")


def test_management_urls_shapes_without_code() -> None:
    urls = api().management_urls(BASE, "abc123", None)
    q = "taskHub=TestHubName&connection=Storage"
    root = f"{BASE}/instances/abc123"
    assert urls == {
        "id": "abc123",
        "statusQueryGetUri": f"{root}?{q}",
        "sendEventPostUri": f"{root}/raiseEvent/{{eventName}}?{q}",
        "terminatePostUri": f"{root}/terminate?reason={{text}}&{q}",
        "rewindPostUri": f"{root}/rewind?reason={{text}}&{q}",
        "purgeHistoryDeleteUri": f"{root}?{q}",
        "restartPostUri": f"{root}/restart?{q}",
        "suspendPostUri": f"{root}/suspend?reason={{text}}&{q}",
        "resumePostUri": f"{root}/resume?reason={{text}}&{q}",
    }


def test_management_urls_carry_code_and_quote_ids() -> None:
    urls = api("Hub1").management_urls(BASE, "a b/c:0", "k/y==")
    assert urls["id"] == "a b/c:0"  # the id itself is not encoded
    for key, url in urls.items():
        if key == "id":
            continue
        parts = urlsplit(url)
        assert parts.path.startswith("/runtime/webhooks/durabletask/instances/a%20b%2Fc%3A0"), url
        query = parse_qs(parts.query)
        assert query["taskHub"] == ["Hub1"] and query["connection"] == ["Storage"], url
        assert query["code"] == ["k/y=="], url
        assert parts.query.endswith("&code=k%2Fy%3D%3D") or parts.query.endswith("&code=k/y%3D%3D"), url


# --------------------------------------------------------------------------------------------
# the status route (public_history + URLs as served)
# --------------------------------------------------------------------------------------------


def _instance(status: str, output: str | None = None) -> Instance:
    return Instance(
        "i1", "o", "e1", status, '"{\\"x\\": 1}"', T0, at(8), output=output, custom_status='{"s": 1}'
    )


def _store_with(status: str, output: str | None = None) -> MemoryStore:
    store = MemoryStore()
    inst = _instance(status, output)
    start = Message("i1", "event", "{}", T0)
    assert store.create_instance(inst, start)
    store.replace_history("i1", [json.dumps(e) for e in sample_history()])
    return store


def _get(mgmt: ManagementApi, query: str, headers: dict[str, str] | None = None) -> web.Response:
    path = "/runtime/webhooks/durabletask/instances/i1" + query
    request = make_mocked_request("GET", path, headers=headers or {"Host": "localhost:7071"})
    response = asyncio.run(mgmt.handle(request, "instances/i1"))
    assert isinstance(response, web.Response)
    return response


def test_status_with_history_flags_is_case_insensitive() -> None:
    mgmt = api(store=_store_with("Completed", '["a", 1]'))
    response = _get(mgmt, "?showHistory=True&showHistoryOutput=TRUE&showInput=False")
    assert response.status == 200
    payload = json.loads(response.text or "")
    assert payload["runtimeStatus"] == "Completed" and payload["output"] == ["a", 1]
    assert payload["input"] is None and payload["customStatus"] == {"s": 1}
    assert (
        payload["createdTime"] == "2025-01-01T12:00:00Z"
        and payload["lastUpdatedTime"] == "2025-01-01T12:00:08Z"
    )
    assert payload["historyEvents"] == public_history(sample_history(), show_output=True, show_input=False)


def test_status_without_history_has_no_history_key_and_shows_input_by_default() -> None:
    mgmt = api(store=_store_with("Completed", "null"))
    payload = json.loads(_get(mgmt, "").text or "")
    assert "historyEvents" not in payload
    assert payload["input"] == '{"x": 1}'
    assert set(payload) == {
        "name", "instanceId", "runtimeStatus", "input", "customStatus", "output", "createdTime", "lastUpdatedTime",
    }  # fmt: skip


def test_status_of_running_instance_is_202_with_location() -> None:
    # The caller's own key (k1, perhaps the master key) and Host header never reach the URL:
    # it carries the system key and starts with the configured base.
    mgmt = api(store=_store_with("Running"))
    response = _get(mgmt, "?code=k1", headers={"Host": "evil.example", "x-functions-key": "k2"})
    assert response.status == 202
    assert response.headers["Location"] == (
        f"{BASE}/instances/i1?taskHub=TestHubName&connection=Storage&code=SYS"
    )
    assert response.headers["Retry-After"] == "5"


def test_status_of_unknown_instance_is_404_with_empty_body() -> None:
    response = _get(api(), "")
    assert response.status == 404 and not response.body
