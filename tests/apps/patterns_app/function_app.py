"""The four canonical Durable Functions patterns, written the way the Python v2 docs show them
(module-level `myApp`, anonymous starter on every method, storage from AzureWebJobsStorage), to
check that such apps run on the self-hosted runtime unchanged."""

import datetime
import json
import logging
import os

import azure.durable_functions as df
import azure.functions as func
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient

myApp = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@myApp.route(route="orchestrators/{functionName}")
@myApp.durable_client_input(client_name="client")
async def http_start(req: func.HttpRequest, client):
    body = req.get_body()
    payload = json.loads(body.decode()) if body else None
    instance_id = await client.start_new(req.route_params.get("functionName"), client_input=payload)
    logging.info("Started orchestration with ID = '%s'.", instance_id)
    return client.create_check_status_response(req, instance_id)


# 1. Function chaining
@myApp.orchestration_trigger(context_name="context")
def hello_sequence(context: df.DurableOrchestrationContext):
    cities = ["Lisbon", "Nairobi", "Osaka"]
    results = []
    for city in cities:
        results.append((yield context.call_activity("greet", city)))
    return results


@myApp.activity_trigger(input_name="city")
def greet(city: str) -> str:
    return f"Hello {city}!"


# 2. Fan-out/fan-in: copy files to blob storage in parallel, sum their sizes
@myApp.orchestration_trigger(context_name="context")
def backup_folder(context: df.DurableOrchestrationContext):
    folder = context.get_input()
    if not folder:
        raise ValueError("A folder path is required as input")
    files = yield context.call_activity("list_files", folder)
    sizes = yield context.task_all([context.call_activity("copy_to_blob", f) for f in files])
    return sum(sizes)


@myApp.activity_trigger(input_name="folder")
def list_files(folder):
    return sorted(os.path.join(folder, name) for name in os.listdir(folder))


@myApp.activity_trigger(input_name="path")
def copy_to_blob(path):
    service = BlobServiceClient.from_connection_string(os.environ["AzureWebJobsStorage"])
    try:
        service.create_container("backups")
    except ResourceExistsError:
        pass
    with open(path, "rb") as data:
        service.get_blob_client("backups", os.path.basename(path)).upload_blob(data, overwrite=True)
    return os.path.getsize(path)


# 3. Human interaction: wait for approval or escalate after a deadline
@myApp.orchestration_trigger(context_name="context")
def approval_workflow(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + datetime.timedelta(seconds=context.get_input() or 30)
    timeout = context.create_timer(deadline)
    approval = context.wait_for_external_event("ApprovalEvent")
    winner = yield context.task_any([approval, timeout])
    if winner == approval:
        timeout.cancel()
        return (yield context.call_activity("record_decision", approval.result))
    return (yield context.call_activity("record_decision", "escalated"))


@myApp.activity_trigger(input_name="decision")
def record_decision(decision):
    return f"decision: {decision}"


# 4. Monitor: poll a condition on a timer until it holds or the monitor expires
@myApp.orchestration_trigger(context_name="context")
def job_monitor(context: df.DurableOrchestrationContext):
    job = context.get_input()
    expiry = context.current_utc_datetime + datetime.timedelta(seconds=job["expiry_s"])
    checks = 0
    while context.current_utc_datetime < expiry:
        checks += 1
        status = yield context.call_activity("check_job", {"flag": job["flag"]})
        if status == "done":
            return {"state": "done", "checks": checks}
        yield context.create_timer(
            context.current_utc_datetime + datetime.timedelta(seconds=job["interval_s"])
        )
    return {"state": "expired", "checks": checks}


@myApp.activity_trigger(input_name="job")
def check_job(job):
    return "done" if os.path.exists(job["flag"]) else "running"
