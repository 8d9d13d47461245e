"""Indexing error case: two functions on the same route (different case) with overlapping methods."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="things", methods=["GET", "POST"])
def list_things(req: func.HttpRequest) -> str:
    return "list"


@app.route(route="/Things/", methods=["POST"])
def add_thing(req: func.HttpRequest) -> str:
    return "add"
