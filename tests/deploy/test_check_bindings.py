"""scripts/check_bindings.py: what Azure would refuse in an app's bindings, found offline."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.check_bindings import check, ncrontab_problem, resolve

pytestmark = pytest.mark.unit

HOST = {"extensionBundle": {"id": "Microsoft.Azure.Functions.ExtensionBundle", "version": "[4.*, 5.0.0)"}}
SETTINGS = {
    "AzureWebJobsStorage__accountName": "st1",
    "SCHEDULE": "0 */5 * * * *",
    "CONTAINER": "generated-data",
}


def http(name: str, route: str | None, *methods: str) -> tuple[str, list[dict[str, Any]]]:
    binding: dict[str, Any] = {"type": "httpTrigger", "name": "req", "methods": list(methods)}
    if route is not None:
        binding["route"] = route
    return name, [binding, {"type": "http", "name": "$return"}]


def timer(name: str, schedule: str) -> tuple[str, list[dict[str, Any]]]:
    return name, [{"type": "timerTrigger", "name": "t", "schedule": schedule}]


@pytest.mark.parametrize(
    "schedule",
    ["0 */5 * * * *", "*/30 * * * * *", "0 0 9-17 * * MON-FRI", "0 30 9 1,15 Jan *", "0/15 * * * * *"],
)
def test_ncrontab_accepts(schedule: str) -> None:
    assert ncrontab_problem(schedule) is None


@pytest.mark.parametrize(
    ("schedule", "why"),
    [
        ("*/5 * * * *", "has 5 fields"),
        ("00:05:00", "has 1 fields"),
        ("0 60 * * * *", "minute field"),
        ("0 0 24 * * *", "hour field"),
        ("0 0 0 0 * *", "day field"),
        ("0 0 0 * 13 *", "month field"),
        ("0 0 0 * * 7", "day-of-week field"),
        ("*/0 * * * * *", "bad step"),
        ("0 0 0 * FOO *", "month field"),
    ],
)
def test_ncrontab_refuses(schedule: str, why: str) -> None:
    problem = ncrontab_problem(schedule)
    assert problem is not None and why in problem


def test_settings_resolve_and_missing_ones_are_named() -> None:
    assert resolve("%CONTAINER%/{name}", SETTINGS) == ("generated-data/{name}", [])
    assert resolve("%NOPE%/x", SETTINGS) == ("/x", ["NOPE"])


def test_a_valid_app_has_no_problem() -> None:
    functions = [
        http("get_job", "jobs/{id}", "GET"),
        http("cancel_job", "jobs/{id}", "DELETE"),
        timer("tick", "%SCHEDULE%"),
        ("orch", [{"type": "orchestrationTrigger", "name": "context"}]),
        (
            "start",
            [
                {"type": "httpTrigger", "name": "req", "route": "start"},
                {"type": "durableClient", "name": "c"},
            ],
        ),
        (
            "on_blob",
            [
                {
                    "type": "blobTrigger",
                    "name": "b",
                    "path": "%CONTAINER%/{name}",
                    "connection": "",
                    "source": "EventGrid",
                }
            ],
        ),  # fmt: skip
        (
            "on_queue",
            [
                {
                    "type": "queueTrigger",
                    "name": "m",
                    "queueName": "session-completed",
                    "connection": "AzureWebJobsStorage",
                }
            ],
        ),  # fmt: skip
    ]
    assert check(functions, SETTINGS, HOST) == []


def test_every_kind_of_problem_is_reported() -> None:
    functions = [
        http("a", "items/{id}", "GET"),
        http("b", "Items/{key:int}", "GET", "POST"),  # same template, common method: conflict
        http("A", "other", "GET"),  # same name as a, case-insensitively
        http("adm", "admin/x"),
        timer("t1", "%NOPE%"),
        timer("t2", "*/5 * * * *"),
        ("blob", [{"type": "blobTrigger", "name": "b", "path": "Bad_Container/{name}", "connection": "DATA"}]),
        ("twice", [{"type": "queueTrigger", "name": "m", "queueName": "q--q"}, {"type": "timerTrigger", "schedule": "0 * * * * *"}]),
        ("client", [{"type": "httpTrigger", "name": "r"}, {"type": "durableClient", "name": "c"}]),
    ]  # fmt: skip

    problems = "\n".join(check(functions, SETTINGS, {}))

    for expected in (
        "b: route 'Items/{key:int}' conflicts with the route of a",
        "A: same name as a",
        "adm: route 'admin/x' conflicts with the host's built-in routes",
        "setting NOPE (in %NOPE%) has no value",
        "t2: timer schedule '*/5 * * * *' has 5 fields",
        "blob: blobTrigger: connection 'DATA' names no setting",
        "'Bad_Container' is not a valid container name",
        "Flex Consumption runs blob triggers from Event Grid only",
        "twice: has 2 triggers",
        "'q--q' is not a valid queue name",
        "durable client bindings but no orchestrator",
        "host.json: durable functions need extensionBundle",
    ):
        assert expected in problems, f"{expected!r} not in:\n{problems}"


def test_identity_based_connections_count_as_set() -> None:
    functions = [("q", [{"type": "queueTrigger", "name": "m", "queueName": "jobs", "connection": "DATA"}])]
    assert check(functions, {"DATA__queueServiceUri": "https://st1.queue.core.windows.net"}, HOST) == []
    assert check(functions, {"AzureWebJobsDATA": "UseDevelopmentStorage=true"}, HOST) == []
