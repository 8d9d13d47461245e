"""Find the app's functions: import `function_app.py`, take its one `FunctionRegister`, build `FunctionInfo`s.

Mirrors what the Python worker and the host check at start-up (durable-protocol.md §1.1,
functions-host-facts.md §1.1): exactly one module-level app (a `df.DFApp` is one), unique
function names, supported binding types only, every binding matched by a parameter, no HTTP
route under the host's `admin`/`runtime` prefixes, no two routes equal with intersecting
methods. Every problem is an `IndexingError` whose message is meant for the app's author.
`get_functions()` is called exactly once: a second call raises "not unique" (pitfall 1).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import azure.functions as func

from selfhost import functions as f
from selfhost.functions import FunctionInfo
from selfhost.http.routing import RouteTemplateError, parse_template

__all__ = [
    "IndexedApp",
    "IndexingError",
    "SUPPORTED_BINDING_TYPES",
    "find_app",
    "import_app",
    "index_app",
    "index_register",
]

log = logging.getLogger(__name__)

_SUPPORTED = (
    f.HTTP_TRIGGER,
    f.HTTP_OUTPUT,
    f.TIMER_TRIGGER,
    f.QUEUE_TRIGGER,
    f.QUEUE_OUTPUT,
    f.BLOB_TRIGGER,
    f.BLOB_BINDING,
    f.ORCHESTRATION_TRIGGER,
    f.ACTIVITY_TRIGGER,
    f.ENTITY_TRIGGER,
    f.DURABLE_CLIENT,
)
# Compared lower-case: function.json type names are case-insensitive to the host.
SUPPORTED_BINDING_TYPES = frozenset(t.lower() for t in _SUPPORTED)
DURABLE_TRIGGERS = frozenset({f.ORCHESTRATION_TRIGGER, f.ACTIVITY_TRIGGER, f.ENTITY_TRIGGER})
# Trigger field that overrides the durable name (the extension's rule, durable-protocol.md §1.2).
_DURABLE_ALIAS = {
    f.ORCHESTRATION_TRIGGER: "orchestration",
    f.ACTIVITY_TRIGGER: "activity",
    f.ENTITY_TRIGGER: "entityName",
}
# Where the durable SDK keeps the user's own function on the handle it registers.
_WRAPPED_ATTRS = ("orchestrator_function", "entity_function", "client_function")
_RESERVED_ROUTE_PREFIXES = ("admin", "runtime")
# The host's Utility.IsValidFunctionName.
_NAME_RE = re.compile(r"[a-z][a-z0-9_\-]{0,127}", re.IGNORECASE)


class IndexingError(Exception):
    """The app cannot be indexed; the message explains what to change, in one paragraph."""


@dataclass(frozen=True)
class IndexedApp:
    app: func.FunctionRegister
    functions: tuple[FunctionInfo, ...]

    def get(self, name: str) -> FunctionInfo | None:
        """Function by name, case-insensitively (the host treats names that way)."""
        return next((fn for fn in self.functions if fn.name.casefold() == name.casefold()), None)

    @property
    def uses_durable(self) -> bool:
        return any(
            fn.trigger_type in DURABLE_TRIGGERS or fn.bindings_of(f.DURABLE_CLIENT) for fn in self.functions
        )


def index_app(app_root: Path, environ: Mapping[str, str] | None = None) -> IndexedApp:
    """Import `<app_root>/function_app.py` and index its one app."""
    module = import_app(app_root)
    return index_register(find_app(module), os.environ if environ is None else environ)


def import_app(app_root: Path) -> ModuleType:
    """Import function_app.py with its folder on sys.path (apps import their own packages)."""
    path = app_root / "function_app.py"
    if not path.is_file():
        raise IndexingError(f"No function_app.py in {app_root}: point --app-root at the folder holding it.")
    root = str(app_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location("function_app", path)
    if spec is None or spec.loader is None:
        raise IndexingError(f"{path} cannot be loaded as a Python module.")
    module = importlib.util.module_from_spec(spec)
    # Registered under its real name so pickling and `import function_app` elsewhere see this copy.
    sys.modules["function_app"] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop("function_app", None)
        raise IndexingError(
            f"Importing {path} failed with {type(exc).__name__}: {exc} ({_where(exc, root)}). "
            "Fix the error (or install the missing package) and start again."
        ) from exc
    return module


def _where(exc: BaseException, root: str) -> str:
    if isinstance(exc, SyntaxError) and exc.filename:
        return f"at {exc.filename}:{exc.lineno}"
    frames = [fr for fr in traceback.extract_tb(exc.__traceback__) if fr.filename.startswith(root)]
    return f"at {frames[-1].filename}:{frames[-1].lineno}" if frames else "location unknown"


def find_app(module: ModuleType) -> func.FunctionRegister:
    """The one module-level FunctionRegister (FunctionApp, DFApp); bound twice counts once."""
    found: list[tuple[str, func.FunctionRegister]] = []
    for name, value in vars(module).items():
        if isinstance(value, func.FunctionRegister) and all(value is not a for _, a in found):
            found.append((name, value))
    where = getattr(module, "__file__", None) or module.__name__
    if not found:
        raise IndexingError(
            f"{where} defines no function app. Create exactly one at module level, e.g. "
            "`app = func.FunctionApp()` or `app = df.DFApp()`, and register blueprints on it."
        )
    if len(found) > 1:
        names = ", ".join(n for n, _ in found)
        raise IndexingError(
            f"{where} defines {len(found)} function apps ({names}); the host indexes exactly one. "
            "Keep one FunctionApp/DFApp and turn the others into func.Blueprint objects registered "
            "with app.register_functions(bp)."
        )
    return found[0][1]


def index_register(app: func.FunctionRegister, environ: Mapping[str, str]) -> IndexedApp:
    try:
        raw = app.get_functions()  # once only: a second call raises "not unique"
    except ValueError as exc:
        raise IndexingError(f"The function app is invalid: {exc}") from exc
    infos = tuple(function_info(fn, environ) for fn in raw)
    _check_names(infos)
    _check_routes(infos)
    return IndexedApp(app=app, functions=infos)


def function_info(fn: func.Function, environ: Mapping[str, str]) -> FunctionInfo:
    name = str(fn.get_function_name())
    bindings: list[dict[str, Any]] = json.loads(fn.get_function_json())["bindings"]
    trigger_obj = fn.get_trigger()
    assert trigger_obj is not None  # get_functions() rejects functions without a trigger
    trigger = next(
        b for b in bindings if b.get("name") == trigger_obj.name and b.get("type") == trigger_obj.type
    )
    for b in bindings:
        if str(b.get("type", "")).lower() not in SUPPORTED_BINDING_TYPES:
            raise IndexingError(
                f"Function '{name}' uses a '{b.get('type')}' binding ('{b.get('name')}'), which this "
                f"runtime does not support. Supported: {', '.join(_SUPPORTED)}."
            )
    user_function = fn.get_user_function()
    _check_parameters(name, user_function, bindings)
    trigger_type = str(trigger["type"])
    alias_key = _DURABLE_ALIAS.get(trigger_type)
    own = next(
        (getattr(user_function, a) for a in _WRAPPED_ATTRS if hasattr(user_function, a)), user_function
    )
    if any(str(b.get("type")).lower() == f.DURABLE_CLIENT.lower() for b in bindings) and not (
        inspect.iscoroutinefunction(own)
    ):
        # The SDK's client wrapper awaits the user's result (durable-protocol.md pitfall 3).
        log.warning(
            "Function '%s' has a durable client binding but is not `async def`; calls will fail", name
        )
    return FunctionInfo(
        name=name,
        trigger_type=trigger_type,
        trigger=trigger,
        bindings=tuple(bindings),
        user_function=user_function,
        is_async=inspect.iscoroutinefunction(user_function),
        durable_name=(str(trigger.get(alias_key) or name) if alias_key else None),
        python_name=getattr(own, "__name__", None),
        disabled=_is_disabled(name, environ),
    )


def _check_parameters(
    name: str, user_function: Callable[..., Any], bindings: Sequence[Mapping[str, Any]]
) -> None:
    """The worker's rule: parameters and bindings (minus `$return`, plus an optional `context`) match."""
    try:
        params = dict(inspect.signature(user_function).parameters)
    except (TypeError, ValueError):
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    bound = {str(b.get("name")) for b in bindings if b.get("name") != "$return"}
    if "context" in params and "context" not in bound:
        params.pop("context")
    if missing := sorted(set(params) - bound):
        raise IndexingError(
            f"Function '{name}': the following parameters are declared in Python but not as bindings: "
            f"{missing}. Every parameter except `context` must be a binding's arg_name."
        )
    if missing := sorted(bound - set(params)):
        raise IndexingError(
            f"Function '{name}': the following bindings have no parameter in Python: {missing}. "
            "Add a parameter with that exact name (the durable SDK's orchestrator and entity handles "
            "only accept context_name='context')."
        )


def _is_disabled(name: str, environ: Mapping[str, str]) -> bool:
    wanted = f"AzureWebJobs.{name}.Disabled".casefold()
    value = next((v for k, v in environ.items() if k.casefold() == wanted), "")
    return value.strip().lower() in ("true", "1")


def _check_names(infos: Sequence[FunctionInfo]) -> None:
    seen: dict[str, str] = {}
    for fn in infos:
        if not _NAME_RE.fullmatch(fn.name):
            raise IndexingError(
                f"'{fn.name}' is not a valid function name: start with a letter and use only letters, "
                "digits, '_' and '-' (at most 128 characters)."
            )
        key = fn.name.casefold()
        if key in seen:
            raise IndexingError(
                f"Function names must be unique (case-insensitively): '{seen[key]}' and '{fn.name}'. "
                "Rename one with @app.function_name(...)."
            )
        seen[key] = fn.name


def _check_routes(infos: Sequence[FunctionInfo]) -> None:
    taken: list[tuple[str, frozenset[str] | None, str]] = []
    for fn in infos:
        if fn.trigger_type != f.HTTP_TRIGGER:
            continue
        route = str(fn.trigger.get("route") or fn.name)
        norm = route.strip().strip("/").casefold()
        if norm.startswith(_RESERVED_ROUTE_PREFIXES):
            raise IndexingError(
                f"Function '{fn.name}': route '{route}' conflicts with the host's built-in routes "
                "(routes may not start with 'admin' or 'runtime'). Choose another route."
            )
        try:
            parse_template(route)
        except RouteTemplateError as exc:
            raise IndexingError(f"Function '{fn.name}': {exc}.") from exc
        raw_methods = fn.trigger.get("methods")
        methods = frozenset(str(m).upper() for m in raw_methods) if raw_methods else None
        for other_norm, other_methods, other_name in taken:
            if other_norm == norm and (methods is None or other_methods is None or methods & other_methods):
                raise IndexingError(
                    f"Function '{fn.name}': the route '{route}' conflicts with the route defined by "
                    f"function '{other_name}' (same route, overlapping methods)."
                )
        taken.append((norm, methods, fn.name))
