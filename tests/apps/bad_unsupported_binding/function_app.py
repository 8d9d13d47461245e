"""Indexing error case: a Service Bus trigger, which the runtime does not support."""

import azure.functions as func

app = func.FunctionApp()


@app.service_bus_queue_trigger(arg_name="msg", queue_name="jobs", connection="ServiceBusConnection")
def on_message(msg: func.ServiceBusMessage) -> None:
    pass
