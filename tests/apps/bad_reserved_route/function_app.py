"""Indexing error case: a route under the host's reserved `admin` prefix."""

import azure.functions as func

app = func.FunctionApp()


@app.route(route="admin/users")
def users(req: func.HttpRequest) -> str:
    return "users"
