"""Identity test app for the runtime tests: echoes what a function sees of its caller.

`whoami` (function level) and `whoami-open` (anonymous) answer with the request headers, the
request URL and the WEBSITE_AUTH_ENABLED setting, so tests can check which identity headers the
runtime removed and added, and which base `req.url` was built on.
"""

import json
import os

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _seen(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "headers": dict(req.headers),
        "url": req.url,
        "auth_enabled": os.environ.get("WEBSITE_AUTH_ENABLED"),
    }
    return func.HttpResponse(json.dumps(body), mimetype="application/json")


@app.route(route="whoami", methods=["GET"])
def whoami(req: func.HttpRequest) -> func.HttpResponse:
    return _seen(req)


@app.route(route="whoami-open", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def whoami_open(req: func.HttpRequest) -> func.HttpResponse:
    return _seen(req)
