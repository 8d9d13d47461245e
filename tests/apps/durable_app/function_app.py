"""Durable test app: the conformance workloads, written as any Azure Durable Functions app.

Activities append one line per run to $DURABLE_APP_RUNLOG (when set) so crash tests can count
how often each activity really ran across process restarts.
"""

import datetime
import json
import os
import threading
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)

_lock = threading.Lock()
_attempts: dict[str, int] = {}


def _record(name: str, value: object) -> int:
    """Record a run; return how many times this (name, value) has run, this one included."""
    key = f"{name}:{json.dumps(value, sort_keys=True)}"
    path = os.environ.get("DURABLE_APP_RUNLOG")
    with _lock:
        if path:
            with open(path, "a", encoding="utf-8") as f:
                f.write(key + "\n")
            with open(path, encoding="utf-8") as f:
                return sum(1 for line in f if line.rstrip("\n") == key)
        _attempts[key] = _attempts.get(key, 0) + 1
        return _attempts[key]


# ---- HTTP starters (the SDK client) ---------------------------------------------------------


@app.route(route="orchestrators/{functionName}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = req.get_body()
    payload = json.loads(body) if body else None
    instance_id = await client.start_new(req.route_params["functionName"], None, payload)
    return client.create_check_status_response(req, instance_id)


@app.route(route="client/{op}/{instanceId?}", methods=["GET", "POST", "DELETE"])
@app.durable_client_input(client_name="client")
async def client_ops(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Exercise the SDK client's management calls from inside a function."""
    op = req.route_params["op"]
    iid = req.route_params.get("instanceId")
    result: object = None
    if op == "status":
        st = await client.get_status(iid, show_history=req.params.get("history") == "1", show_input=True)
        result = st.to_json() if st else None
        if st and getattr(st, "historyEvents", None) is not None:
            result["historyEvents"] = st.historyEvents
    elif op == "list":
        statuses = [df.OrchestrationRuntimeStatus(s) for s in req.params.get("status", "").split(",") if s]
        found = await client.get_status_by(runtime_status=statuses or None)
        result = sorted(s.instance_id for s in found)
    elif op == "all":
        result = sorted(s.instance_id for s in await client.get_status_all())
    elif op == "raise":
        await client.raise_event(iid, req.params["name"], json.loads(req.get_body() or b"null"))
    elif op == "terminate":
        await client.terminate(iid, req.params.get("reason", "stopped"))
    elif op == "suspend":
        await client.suspend(iid, "pause")
    elif op == "resume":
        await client.resume(iid, "go")
    elif op == "purge":
        result = (await client.purge_instance_history(iid)).instances_deleted
    elif op == "restart":
        result = await client.restart(iid)
    elif op == "wait":
        return await client.wait_for_completion_or_create_check_status_response(req, iid, 20000, 200)
    return func.HttpResponse(json.dumps(result, default=str), mimetype="application/json")


# ---- orchestrators ---------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def chaining(context: df.DurableOrchestrationContext):
    a = yield context.call_activity("hello", "Tokyo")
    b = yield context.call_activity("hello", "Seattle")
    c = yield context.call_activity("hello", "London")
    return [a, b, c]


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input() or 10
    tasks = [context.call_activity("double", i) for i in range(n)]
    results = yield context.task_all(tasks)
    return sum(results)


@app.orchestration_trigger(context_name="context")
def sequence(context: df.DurableOrchestrationContext):
    n = context.get_input() or 10
    total = 0
    for i in range(n):
        total += yield context.call_activity("double", i)
    return total


@app.orchestration_trigger(context_name="context")
def retry_ok(context: df.DurableOrchestrationContext):
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=200, max_number_of_attempts=3)
    key = context.get_input() or "k"
    result = yield context.call_activity_with_retry("flaky", opts, {"key": key, "fail_times": 2})
    return result


@app.orchestration_trigger(context_name="context")
def retry_exhaust(context: df.DurableOrchestrationContext):
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=100, max_number_of_attempts=3)
    key = context.get_input() or "x"
    try:
        yield context.call_activity_with_retry("flaky", opts, {"key": key, "fail_times": 99})
    except Exception as exc:  # the SDK raises the activity's failure into the orchestrator
        return f"caught: {exc}"[:200]
    return "unexpected success"


@app.orchestration_trigger(context_name="context")
def slow_retry(context: df.DurableOrchestrationContext):
    """Fails once, retries after a 3 s wait (crash tests kill the runtime during the wait)."""
    opts = df.RetryOptions(first_retry_interval_in_milliseconds=3000, max_number_of_attempts=3)
    result = yield context.call_activity_with_retry(
        "flaky", opts, {"key": context.get_input(), "fail_times": 1}
    )
    return result


@app.orchestration_trigger(context_name="context")
def timer(context: df.DurableOrchestrationContext):
    seconds = context.get_input() or 1
    start = context.current_utc_datetime
    yield context.create_timer(start + datetime.timedelta(seconds=seconds))
    after = yield context.call_activity("hello", "after timer")
    return {"waited": (context.current_utc_datetime - start).total_seconds(), "after": after}


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    timeout_s = context.get_input() or 5
    deadline = context.current_utc_datetime + datetime.timedelta(seconds=timeout_s)
    timeout_task = context.create_timer(deadline)
    event_task = context.wait_for_external_event("Approval")
    context.set_custom_status("awaiting approval")
    winner = yield context.task_any([event_task, timeout_task])
    if winner == event_task:
        timeout_task.cancel()
        return {"approved": event_task.result}
    return "timeout"


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    first = yield context.call_sub_orchestrator("chaining")
    second = yield context.call_sub_orchestrator("fan_out", 5, instance_id=f"{context.instance_id}-child")
    return {"first": first, "second": second}


@app.orchestration_trigger(context_name="context")
def counter(context: df.DurableOrchestrationContext):
    state = context.get_input() or {"n": 0, "limit": 10}
    n = state["n"]
    if n % 50 == 0:
        yield context.call_activity("hello", f"checkpoint {n}")
    if n >= state["limit"]:
        return n
    context.continue_as_new({"n": n + 1, "limit": state["limit"]})


@app.orchestration_trigger(context_name="context")
def status_steps(context: df.DurableOrchestrationContext):
    context.set_custom_status({"step": 1})
    yield context.call_activity("hello", "one")
    context.set_custom_status({"step": 2})
    yield context.wait_for_external_event("Go")
    context.set_custom_status({"step": 3})
    return "done"


@app.orchestration_trigger(context_name="context")
def big_status(context: df.DurableOrchestrationContext):
    context.set_custom_status("x" * 20000)
    yield context.call_activity("hello", "never")
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def fails(context: df.DurableOrchestrationContext):
    yield context.call_activity("hello", "before")
    raise ValueError("boom in orchestrator")


@app.orchestration_trigger(context_name="context")
def unknown_activity(context: df.DurableOrchestrationContext):
    yield context.call_activity("no_such_activity", 1)
    return "unreachable"


@app.orchestration_trigger(context_name="context")
def slow_fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input() or 20
    results = yield context.task_all([context.call_activity("slow_double", i) for i in range(n)])
    return sum(results)


@app.orchestration_trigger(context_name="context")
def http_call(context: df.DurableOrchestrationContext):
    url = context.get_input()
    resp = yield context.call_http("GET", url)
    return {"status": resp["statusCode"], "content": resp["content"]}


# ---- activities ------------------------------------------------------------------------------


@app.activity_trigger(input_name="city")
def hello(city: str) -> str:
    _record("hello", city)
    return f"Hello {city}"


@app.activity_trigger(input_name="value")
def double(value: int) -> int:
    _record("double", value)
    return value * 2


@app.activity_trigger(input_name="value")
def slow_double(value: int) -> int:
    time.sleep(0.2)
    _record("slow_double", value)
    return value * 2


@app.activity_trigger(input_name="spec")
def flaky(spec: dict) -> str:
    attempt = _record("flaky", spec)
    if attempt <= spec["fail_times"]:
        raise RuntimeError(f"flaky failure #{attempt}")
    return f"ok on attempt {attempt}"


# ---- durable entities ------------------------------------------------------------------------


@app.entity_trigger(context_name="context", entity_name="Counter")
def counter_entity(context: df.DurableEntityContext) -> None:
    """Microsoft's Counter sample (add/reset/get), plus a slow add (crash tests kill the runtime
    mid-batch) and an operation that raises."""
    current_value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        amount = context.get_input()
        current_value += amount
    elif operation == "add_slowly":
        time.sleep(0.02)
        current_value += context.get_input()
    elif operation == "reset":
        current_value = 0
    elif operation == "get":
        context.set_result(current_value)
    elif operation == "boom":
        raise ValueError(f"boom at {current_value}")
    context.set_state(current_value)


@app.orchestration_trigger(context_name="context")
def entity_calls(context: df.DurableOrchestrationContext):
    entity_id = df.EntityId("Counter", context.get_input() or "orch")
    context.signal_entity(entity_id, "add", 10)
    yield context.call_entity(entity_id, "add", 5)
    value = yield context.call_entity(entity_id, "get")
    try:
        yield context.call_entity(entity_id, "boom")
        error = None
    except Exception as exc:  # noqa: BLE001 - the SDK raises the operation's failure into the orchestrator
        error = str(exc)
    context.signal_entity(entity_id, "reset")
    after = yield context.call_entity(entity_id, "get")
    return {"value": value, "error": error, "after": after}


@app.orchestration_trigger(context_name="context")
def entity_adder(context: df.DurableOrchestrationContext):
    """Adds 1 to Counter `key` `n` times, one call at a time; returns the last value it saw."""
    spec = context.get_input()
    entity_id = df.EntityId("Counter", spec["key"])
    for _ in range(spec["n"]):
        yield context.call_entity(entity_id, "add", 1)
    last = yield context.call_entity(entity_id, "get")
    return last


@app.orchestration_trigger(context_name="context")
def entity_unknown(context: df.DurableOrchestrationContext):
    yield context.call_entity(df.EntityId("NoSuchEntity", "k"), "get")
    return "unreachable"


@app.route(route="entity/{name}/{key}", methods=["GET", "POST"])
@app.durable_client_input(client_name="client")
async def entity_client(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """POST ?op=..., body = JSON input: client.signal_entity; GET: client.read_entity_state."""
    entity_id = df.EntityId(req.route_params["name"], req.route_params["key"])
    if req.method == "POST":
        body = req.get_body()
        await client.signal_entity(entity_id, req.params["op"], json.loads(body) if body else None)
        return func.HttpResponse(status_code=202)
    state = await client.read_entity_state(entity_id)
    return func.HttpResponse(
        json.dumps({"exists": state.entity_exists, "state": state.entity_state}), mimetype="application/json"
    )


# ---- rewind ----------------------------------------------------------------------------------


@app.orchestration_trigger(context_name="context")
def rewindable(context: df.DurableOrchestrationContext):
    """Fails on its first run (flaky fails once, no retry options); a rewind lets it finish."""
    key = context.get_input()
    first = yield context.call_activity("hello", f"before {key}")
    second = yield context.call_activity("flaky", {"key": key, "fail_times": 1})
    return [first, second]


@app.orchestration_trigger(context_name="context")
def rewindable_parent(context: df.DurableOrchestrationContext):
    """A fan-out whose three calls fail once, then a sub-orchestration that fails once."""
    key = context.get_input()
    fanned = yield context.task_all(
        [context.call_activity("flaky", {"key": f"{key}-{i}", "fail_times": 1}) for i in range(3)]
    )
    child = yield context.call_sub_orchestrator(
        "rewindable", f"{key}-child", instance_id=f"{context.instance_id}-child"
    )
    return {"fanned": fanned, "child": child}


@app.route(route="rewind/{instanceId}", methods=["POST"])
@app.durable_client_input(client_name="client")
async def rewind_client(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """client.rewind; the SDK's exception text comes back as a 409."""
    try:
        await client.rewind(req.route_params["instanceId"], req.params.get("reason", "rewound by test"))
    except Exception as exc:  # noqa: BLE001 - report the SDK's error to the test
        return func.HttpResponse(str(exc), status_code=409)
    return func.HttpResponse(status_code=202)
