"""Indexing error case: only a Blueprint, no FunctionApp at module level."""

import azure.functions as func

bp = func.Blueprint()


@bp.route(route="x")
def x(req: func.HttpRequest) -> str:
    return "x"
