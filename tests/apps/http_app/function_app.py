"""HTTP test app for the runtime tests: routes, methods, auth levels, return kinds, failures.

A plain FunctionApp whose HTTP functions need a function key unless they say otherwise.
Function names are chosen so that the host's alphabetical route order is visible:
`item_by_id` (items/{id:int}) is tried before `item_by_name` (items/{name}).
"""

import asyncio
import json
import logging
import time

import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)


def _json(data: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(data), status_code=status, mimetype="application/json")


@app.route(route="hello", methods=["GET"])
def hello(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(f"Hello, {req.params.get('name', 'world')}")


@app.route(route="items/{id:int}", methods=["GET"])
def item_by_id(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "item_by_id", "route_params": dict(req.route_params)})


@app.route(route="items/{name}", methods=["GET"])
def item_by_name(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"function": "item_by_name", "route_params": dict(req.route_params)})


@app.route(route="opt/{id?}", methods=["GET"])
def optional_param(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"route_params": dict(req.route_params)})


@app.route(route="files/{*path}", methods=["GET"])
def catch_all(req: func.HttpRequest) -> func.HttpResponse:
    return _json({"route_params": dict(req.route_params)})


@app.route(route="echo", methods=["POST", "PUT"])
def echo(req: func.HttpRequest) -> func.HttpResponse:
    return _json(
        {
            "method": req.method,
            "url": req.url,
            "headers": dict(req.headers),
            "params": dict(req.params),
            "body": req.get_body().decode("utf-8"),
        },
        status=201,
    )


@app.route(route="restricted", auth_level=func.AuthLevel.ADMIN)
def admin_only(req: func.HttpRequest) -> str:
    return "admin ok"


@app.route(route="open", auth_level=func.AuthLevel.ANONYMOUS)
def anonymous(req: func.HttpRequest) -> str:
    return "open ok"


@app.route(route="boom")
def boom(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("kaboom-secret-detail")


@app.route(route="async-hello")
async def async_hello(req: func.HttpRequest) -> func.HttpResponse:
    await asyncio.sleep(0.01)
    return func.HttpResponse("async ok", headers={"X-Kind": "async"})


@app.route(route="plain")
def plain_text(req: func.HttpRequest) -> str:
    return "just a string"


@app.route(route="response-object")
def response_object(req: func.HttpRequest) -> str:
    return json.dumps({"statusCode": 202, "headers": {"X-From": "object"}, "body": {"ok": True}})


@app.route(route="nothing")
def nothing(req: func.HttpRequest) -> None:
    logging.info("returning nothing")


@app.route(route="with-context")
def with_context(req: func.HttpRequest, context: func.Context) -> func.HttpResponse:
    return _json({"function_name": context.function_name, "invocation_id": context.invocation_id})


@app.route(route="slow")
def slow(req: func.HttpRequest) -> str:
    time.sleep(float(req.params.get("s", "4")))
    return "too late"


@app.route(route="switched-off")
def switched_off(req: func.HttpRequest) -> str:
    return "should be disabled by AzureWebJobs.switched_off.Disabled"
