"""Test app for the trigger end-to-end test: a queue → blob → blob trigger → queue chain.

Names come from app settings (`%...%`) so each test run uses its own queues and container.
"""

import json

import azure.functions as func

app = func.FunctionApp()


@app.queue_trigger(arg_name="msg", queue_name="%TASKS_QUEUE%", connection="AzureWebJobsStorage")
@app.blob_output(arg_name="out", path="%OUT_CONTAINER%/{name}.txt", connection="AzureWebJobsStorage")
def on_task(msg: func.QueueMessage, out: func.Out[str]) -> None:
    out.set(msg.get_json()["text"].upper())


@app.blob_trigger(arg_name="blob", path="%OUT_CONTAINER%/{name}.txt", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="done", queue_name="%DONE_QUEUE%", connection="AzureWebJobsStorage")
def on_blob(blob: func.InputStream, done: func.Out[str]) -> None:
    done.set(json.dumps({"name": blob.name, "body": blob.read().decode()}))
