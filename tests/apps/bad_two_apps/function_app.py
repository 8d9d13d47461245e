"""Indexing error case: two module-level apps (the host indexes exactly one)."""

import azure.functions as func

app = func.FunctionApp()
other_app = func.FunctionApp()
same_app_again = app  # the same object under a second name counts once


@app.route(route="a")
def a(req: func.HttpRequest) -> str:
    return "a"


@other_app.route(route="b")
def b(req: func.HttpRequest) -> str:
    return "b"
