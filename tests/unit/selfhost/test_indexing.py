"""Indexing function_app.py into FunctionInfo records, and every indexing error (selfhost.indexing)."""

from __future__ import annotations

import logging
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import azure.functions as func
import pytest

from selfhost.indexing import IndexingError, find_app, index_app, index_register

pytestmark = pytest.mark.unit

APPS = Path(__file__).resolve().parents[2] / "apps"


@pytest.fixture(autouse=True)
def _restore_import_state() -> Iterator[None]:
    """index_app puts the app root on sys.path and registers `function_app`; undo both."""
    path, module = list(sys.path), sys.modules.get("function_app")
    yield
    sys.path[:] = path
    if module is None:
        sys.modules.pop("function_app", None)
    else:
        sys.modules["function_app"] = module


def module_with(**attrs: Any) -> types.ModuleType:
    module = types.ModuleType("function_app")
    module.__dict__.update(attrs)
    return module


def test_http_app_is_indexed() -> None:
    indexed = index_app(APPS / "http_app", environ={"AzureWebJobs.switched_off.Disabled": "True"})
    by_name = {fn.name: fn for fn in indexed.functions}
    assert {"hello", "item_by_id", "async_hello", "with_context", "switched_off"} <= set(by_name)
    hello = by_name["hello"]
    assert hello.trigger_type == "httpTrigger"
    assert hello.trigger["route"] == "hello" and hello.trigger["authLevel"] == "FUNCTION"
    assert hello.python_name == "hello" and hello.durable_name is None
    assert by_name["async_hello"].is_async and not hello.is_async
    assert by_name["admin_only"].trigger["authLevel"] == "ADMIN"
    assert by_name["switched_off"].disabled and not hello.disabled
    assert indexed.get("HELLO") is hello
    assert not indexed.uses_durable


@pytest.mark.parametrize(
    ("app", "message"),
    [
        ("bad_no_app", "defines no function app"),
        ("bad_two_apps", r"defines 2 function apps \(app, other_app\)"),
        ("bad_duplicate_names", "Function work does not have a unique function name"),
        ("bad_unsupported_binding", "'serviceBusTrigger' binding"),
        ("bad_reserved_route", "conflicts with the host's built-in routes"),
        ("bad_route_conflict", "conflicts with the route defined by function 'list_things'"),
        ("bad_import_error", r"RuntimeError: settings missing: DATABASE_URL \(at .*function_app.py:7\)"),
        ("bad_param_mismatch", r"declared in Python but not as bindings: \['request'\]"),
    ],
)
def test_bad_apps_fail_with_a_clear_message(app: str, message: str) -> None:
    with pytest.raises(IndexingError, match=message):
        index_app(APPS / app, environ={})


def test_missing_function_app_file(tmp_path: Path) -> None:
    with pytest.raises(IndexingError, match="No function_app.py"):
        index_app(tmp_path, environ={})


def test_the_same_app_under_two_names_counts_once() -> None:
    app = func.FunctionApp()
    assert find_app(module_with(app=app, alias=app, bp=func.Blueprint())) is app


def test_get_functions_is_called_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = func.FunctionApp()

    @app.route(route="x")
    def x(req: func.HttpRequest) -> str:
        return "x"

    calls: list[int] = []
    original = app.get_functions

    def counting() -> list[func.Function]:
        calls.append(1)
        return original()

    monkeypatch.setattr(app, "get_functions", counting)
    index_register(app, {})
    assert calls == [1]


def test_function_names_are_unique_case_insensitively() -> None:
    app = func.FunctionApp()

    @app.function_name("Work")
    @app.route(route="a")
    def a(req: func.HttpRequest) -> str:
        return "a"

    @app.function_name("work")
    @app.route(route="b")
    def b(req: func.HttpRequest) -> str:
        return "b"

    with pytest.raises(IndexingError, match="'Work' and 'work'"):
        index_register(app, {})


def test_invalid_function_name() -> None:
    app = func.FunctionApp()

    @app.function_name("9lives")
    @app.route(route="a")
    def a(req: func.HttpRequest) -> str:
        return "a"

    with pytest.raises(IndexingError, match="not a valid function name"):
        index_register(app, {})


def test_same_route_with_disjoint_methods_is_allowed() -> None:
    app = func.FunctionApp()

    @app.route(route="things", methods=["GET"])
    def list_things(req: func.HttpRequest) -> str:
        return "l"

    @app.route(route="things", methods=["POST"])
    def add_thing(req: func.HttpRequest) -> str:
        return "a"

    assert len(index_register(app, {}).functions) == 2


def test_bad_route_template_is_an_indexing_error() -> None:
    app = func.FunctionApp()

    @app.route(route="items/{id:nosuch}")
    def items(req: func.HttpRequest) -> str:
        return "i"

    with pytest.raises(IndexingError, match="unknown route constraint 'nosuch'"):
        index_register(app, {})


def durable_app() -> df.DFApp:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="start")
    @app.durable_client_input(client_name="client")
    async def starter(req: func.HttpRequest, client: Any) -> str:
        return "s"

    @app.function_name("orch_fn")
    @app.orchestration_trigger(context_name="context", orchestration="OrchAlias")
    def orch_impl(context: Any) -> Any:
        yield None

    @app.activity_trigger(input_name="city", activity="SayHello")
    def say_hello(city: str) -> str:
        return city

    @app.activity_trigger(input_name="x")
    def plain_activity(x: str) -> str:
        return x

    return app


def test_durable_names_python_names_and_async_flags() -> None:
    indexed = index_register(durable_app(), {})
    by_name = {fn.name: fn for fn in indexed.functions}
    assert indexed.uses_durable
    orch = by_name["orch_fn"]
    assert (orch.durable_name, orch.python_name, orch.is_async) == ("OrchAlias", "orch_impl", False)
    # The user function is the SDK's handle; its user generator hangs off it.
    assert orch.user_function.orchestrator_function.__name__ == "orch_impl"  # type: ignore[attr-defined]
    assert (by_name["say_hello"].durable_name, by_name["say_hello"].python_name) == ("SayHello", "say_hello")
    assert by_name["plain_activity"].durable_name == "plain_activity"
    starter = by_name["starter"]
    assert starter.is_async and starter.durable_name is None
    assert starter.bindings_of("durableClient", "IN")


def test_orchestrator_context_name_other_than_context_is_rejected() -> None:
    # The SDK's handle only has a `context` parameter, so the real worker rejects this too.
    app = df.DFApp()

    @app.orchestration_trigger(context_name="ctx")
    def orch(ctx: Any) -> Any:
        yield None

    with pytest.raises(IndexingError, match=r"bindings have no parameter in Python: \['ctx'\]"):
        index_register(app, {})


def test_sync_durable_client_function_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

    @app.route(route="start")
    @app.durable_client_input(client_name="client")
    def starter(req: func.HttpRequest, client: Any) -> str:
        return "s"

    with caplog.at_level(logging.WARNING, logger="selfhost.indexing"):
        index_register(app, {})
    assert "not `async def`" in caplog.text


def test_disabled_setting_is_matched_case_insensitively_and_accepts_1() -> None:
    app = func.FunctionApp()

    @app.route(route="a")
    def a(req: func.HttpRequest) -> str:
        return "a"

    assert index_register(app, {"azurewebjobs.A.disabled": "1"}).functions[0].disabled
