"""The route table: which HTTP function a request goes to, in the Functions host's order.

The host sorts functions by name (case-insensitively) and puts every route into one collection,
so the first *function name* whose template and methods match wins, not the most specific
template (functions-host-facts.md §1.1; Azure/azure-functions-host#9876). The HTTP method is a
route constraint: a known path with the wrong method matches nothing and gets 404, not 405.
Pure: no aiohttp, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from selfhost.functions import HTTP_TRIGGER, FunctionInfo
from selfhost.http.routing import RouteTemplate, parse_template

__all__ = ["HttpRoute", "RouteTable", "build_route_table", "full_template_text", "http_route"]


@dataclass(frozen=True)
class HttpRoute:
    """One HTTP function's route: full template (route prefix included), methods, auth level."""

    function: FunctionInfo
    template: RouteTemplate
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


class RouteTable:
    """Routes in the host's order: function name, case-insensitive; first match wins."""

    def __init__(self, routes: Iterable[HttpRoute]) -> None:
        self._routes = sorted(routes, key=lambda r: r.function.name.casefold())

    def __iter__(self) -> Iterator[HttpRoute]:
        return iter(self._routes)

    def __len__(self) -> int:
        return len(self._routes)

    def match(self, method: str, path: Sequence[str]) -> tuple[HttpRoute, dict[str, str]] | None:
        for route in self._routes:
            if not route.allows(method):
                continue
            values = route.template.match(path)
            if values is not None:
                return route, values
        return None


def full_template_text(route_prefix: str, route: str) -> str:
    """`prefix + "/" + route` as the host builds it; an empty prefix adds nothing."""
    prefix, route = route_prefix.strip("/"), route.strip().strip("/")
    return f"{prefix}/{route}" if prefix and route else prefix or route


def http_route(fn: FunctionInfo, route_prefix: str) -> HttpRoute:
    trigger = fn.trigger
    methods = trigger.get("methods")
    return HttpRoute(
        function=fn,
        template=parse_template(full_template_text(route_prefix, str(trigger.get("route") or fn.name))),
        methods=frozenset(str(m).upper() for m in methods) if methods else None,
        auth_level=str(trigger.get("authLevel") or "function").lower(),
    )


def build_route_table(functions: Iterable[FunctionInfo], route_prefix: str) -> RouteTable:
    return RouteTable(http_route(fn, route_prefix) for fn in functions if fn.trigger_type == HTTP_TRIGGER)
