"""Indexing error case: the parameter is `request` but the binding's arg_name defaults to `req`."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="x")
def x(request: func.HttpRequest) -> str:
    return "x"
