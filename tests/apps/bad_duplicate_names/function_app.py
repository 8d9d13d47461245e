"""Indexing error case: two functions named "work"."""

import azure.functions as func

app = func.FunctionApp()


@app.function_name("work")
@app.route(route="one")
def one(req: func.HttpRequest) -> str:
    return "1"


@app.function_name("work")
@app.route(route="two")
def two(req: func.HttpRequest) -> str:
    return "2"
