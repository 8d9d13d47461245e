"""Benchmark workloads for the self-hosted runtime: a fan-out and a sequential chain."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.FUNCTION)


@app.orchestration_trigger(context_name="context")
def fan_out(context: df.DurableOrchestrationContext):
    n = context.get_input()
    results = yield context.task_all([context.call_activity("work", i) for i in range(n)])
    return len(results)


@app.orchestration_trigger(context_name="context")
def chain(context: df.DurableOrchestrationContext):
    n = context.get_input()
    for i in range(n):
        yield context.call_activity("work", i)
    return n


@app.activity_trigger(input_name="value")
def work(value: int) -> int:
    return value + 1
