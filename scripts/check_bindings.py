"""Check a Functions app's bindings the way Azure will read them, without Azure.

    python -I scripts/check_bindings.py --app-root DIR [--settings FILE.json] [--plan flex]
    python -I scripts/check_bindings.py --app-root DIR --list     # the functions as JSON

Imports `function_app` from DIR (with `-I`, only DIR and the interpreter's site-packages are on
the path: run it with a virtual environment holding nothing but requirements.txt to prove the
package is complete), indexes it as the Python worker does (`app.get_functions()`, then each
function's JSON), and reports every problem the host would refuse or trip over:

- function names: valid and unique (case-insensitive);
- exactly one trigger per function;
- HTTP routes: not under the reserved `admin`/`runtime` prefixes, no two on the same template
  with a common method;
- `%Setting%` in any binding resolves in the given settings (the app settings Azure will have);
- timer schedules: NCRONTAB with 6 fields, each field in range, after `%Setting%` resolution;
- connections: each names a setting, or the prefix of an identity-based one (`__accountName`,
  `__serviceUri`, `__blobServiceUri` / `__queueServiceUri`); empty means AzureWebJobsStorage;
- queue and container names valid after resolution;
- blob triggers: `source=EventGrid` on the Flex Consumption plan (it refuses the polling scan);
- durable functions: orchestration, activity and entity names unique, a client binding only
  with an orchestrator to start, host.json's extension bundle v4 (which brings the extension)
  and a valid task hub name.

Prints one line per problem and exits 1 if any, else prints a summary and exits 0. Standard
library and azure-functions only: it runs where only the app's requirements are installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["check", "index", "ncrontab_problem", "resolve"]

_PERCENT = re.compile(r"%([^%]+)%")
_FUNCTION_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,127}$")
_QUEUE = re.compile(r"^[a-z0-9](?!.*--)[a-z0-9-]{1,61}[a-z0-9]$")
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$|^\$root$")
_HUB = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,44}$")
_IDENTITY_SUFFIXES = (
    "__accountName",
    "__serviceUri",
    "__blobServiceUri",
    "__queueServiceUri",
    "__tableServiceUri",
)
_RESERVED_ROUTES = ("admin", "runtime")
_DURABLE_TRIGGERS = {
    "orchestrationTrigger": "orchestration",
    "activityTrigger": "activity",
    "entityTrigger": "entity",
}
# NCRONTAB fields: (name, low, high, names)
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
_DAYS = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"]
_FIELDS = [
    ("second", 0, 59, {}),
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day", 1, 31, {}),
    ("month", 1, 12, {n: i + 1 for i, n in enumerate(_MONTHS)}),
    ("day-of-week", 0, 6, {n: i for i, n in enumerate(_DAYS)}),
]

Function = tuple[str, list[dict[str, Any]]]


def index(app_root: Path) -> list[Function]:
    """(name, bindings) of every function of `function_app.py` in `app_root`, as the worker sends them."""
    sys.path.insert(0, str(app_root))
    import azure.functions as func

    module = importlib.import_module("function_app")
    apps = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
    if len(apps) != 1:
        raise SystemExit(f"function_app.py must define exactly one FunctionApp, found {len(apps)}")
    return [
        (str(f.get_function_name()), json.loads(f.get_function_json())["bindings"])
        for f in apps[0].get_functions()
    ]


def resolve(text: str, settings: Mapping[str, str]) -> tuple[str, list[str]]:
    """`text` with each `%Name%` replaced by its setting, and the names that had no value."""
    missing: list[str] = []

    def sub(match: re.Match[str]) -> str:
        value = settings.get(match.group(1), "")
        if not value:
            missing.append(match.group(1))
        return value

    return _PERCENT.sub(sub, text), missing


def ncrontab_problem(schedule: str) -> str | None:
    """Why `schedule` is not a 6-field NCRONTAB expression, or None."""
    parts = schedule.split()
    if len(parts) != 6:
        return f"has {len(parts)} fields; NCRONTAB needs 6 ({{second}} {{minute}} {{hour}} {{day}} {{month}} {{day-of-week}})"
    for text, (name, low, high, names) in zip(parts, _FIELDS, strict=True):
        for item in text.split(","):
            problem = _cron_item(item.upper(), low, high, names)
            if problem:
                return f"{name} field {text!r}: {problem}"
    return None


def _cron_item(item: str, low: int, high: int, names: Mapping[str, int]) -> str | None:
    base, slash, step = item.partition("/")
    if slash and (not step.isdigit() or int(step) == 0):
        return f"bad step {step!r}"
    if base == "*":
        return None
    bounds = base.split("-")  # `a`, `a-b`; with a step also `a/n` (from a to the end)
    if len(bounds) > 2:
        return f"cannot read {item!r}"
    for bound in bounds:
        value = names.get(bound, int(bound) if bound.isdigit() else None)
        if value is None or not low <= value <= high:
            return f"{bound!r} is not in {low}-{high}"
    return None


def check(
    functions: Sequence[Function],
    settings: Mapping[str, str],
    host_json: Mapping[str, Any],
    *,
    plan: str = "flex",
) -> list[str]:
    problems: list[str] = []
    seen: dict[str, str] = {}
    for name, _ in functions:
        if not _FUNCTION_NAME.match(name):
            problems.append(f"{name}: not a valid function name")
        if name.lower() in seen:
            problems.append(f"{name}: same name as {seen[name.lower()]} (names are case-insensitive)")
        seen[name.lower()] = name
    problems += _routes(functions)
    durable: dict[str, dict[str, str]] = {kind: {} for kind in _DURABLE_TRIGGERS.values()}
    uses_client = False
    for name, bindings in functions:
        triggers = [b for b in bindings if str(b.get("type", "")).endswith("Trigger")]
        if len(triggers) != 1:
            problems.append(f"{name}: has {len(triggers)} triggers; a function has exactly one")
        for binding in bindings:
            problems += [f"{name}: {p}" for p in _binding(binding, settings, plan)]
            kind = _DURABLE_TRIGGERS.get(str(binding.get("type")))
            if kind:
                other = durable[kind].get(name.lower())
                if other:
                    problems.append(f"{name}: {kind} name also used by {other}")
                durable[kind][name.lower()] = name
            uses_client |= binding.get("type") == "durableClient"
    if uses_client and not durable["orchestration"] and not durable["entity"]:
        problems.append("durable client bindings but no orchestrator or entity to start")
    if any(durable.values()) or uses_client:
        problems += _durable_host(host_json)
    return problems


def _binding(binding: Mapping[str, Any], settings: Mapping[str, str], plan: str) -> list[str]:
    problems: list[str] = []
    kind = str(binding.get("type", ""))
    resolved: dict[str, str] = {}
    for key, value in binding.items():
        if isinstance(value, str):
            resolved[key], missing = resolve(value, settings)
            problems += [f"{kind} {key}: setting {m} (in %{m}%) has no value" for m in missing]
    if "connection" in binding:
        problems += _connection(kind, str(binding["connection"] or ""), settings)
    if kind == "timerTrigger":
        why = ncrontab_problem(resolved.get("schedule", ""))
        if why:
            problems.append(f"timer schedule {resolved.get('schedule', '')!r} {why}")
    queue = resolved.get("queueName", "")
    if kind.startswith("queue") and queue and not _QUEUE.match(queue):
        problems.append(f"{kind}: {queue!r} is not a valid queue name")
    if kind.startswith("blob") and resolved.get("path"):
        container = resolved["path"].split("/", 1)[0]
        if "{" not in container and not _CONTAINER.match(container):
            problems.append(f"{kind}: {container!r} is not a valid container name")
    if kind == "blobTrigger" and plan == "flex" and binding.get("source") != "EventGrid":
        problems.append(
            "blobTrigger: Flex Consumption runs blob triggers from Event Grid only: "
            "add source=func.BlobSource.EVENT_GRID to the decorator"
        )
    return problems


def _connection(kind: str, name: str, settings: Mapping[str, str]) -> list[str]:
    name = name or "AzureWebJobsStorage"
    for candidate in (name, f"AzureWebJobs{name}"):
        if settings.get(candidate) or any(settings.get(candidate + s) for s in _IDENTITY_SUFFIXES):
            return []
    return [
        f"{kind}: connection {name!r} names no setting (neither {name} nor an identity-based "
        f"{name}__accountName / __serviceUri / __blobServiceUri / __queueServiceUri)"
    ]


def _routes(functions: Sequence[Function]) -> list[str]:
    problems: list[str] = []
    seen: list[tuple[str, frozenset[str], str]] = []
    # Sorted by name as the host sorts them, so a report names the one that wins.
    for name, bindings in sorted(functions, key=lambda f: f[0].lower()):
        for binding in bindings:
            if binding.get("type") != "httpTrigger":
                continue
            route = str(binding.get("route") or name).strip("/")
            template = re.sub(r"\{([^}:=?]+)[^}]*\}", "{}", route.lower())
            if template.split("/", 1)[0] in _RESERVED_ROUTES:
                problems.append(f"{name}: route {route!r} conflicts with the host's built-in routes")
            methods = frozenset(str(m).upper() for m in binding.get("methods") or ())
            for other_template, other_methods, other in seen:
                overlap = not methods or not other_methods or methods & other_methods
                if other_template == template and overlap:
                    problems.append(f"{name}: route {route!r} conflicts with the route of {other}")
            seen.append((template, methods, name))
    return problems


def _durable_host(host_json: Mapping[str, Any]) -> list[str]:
    problems: list[str] = []
    bundle = host_json.get("extensionBundle") or {}
    version = str(bundle.get("version", ""))
    if bundle.get("id") != "Microsoft.Azure.Functions.ExtensionBundle" or not version.startswith("[4."):
        problems.append(
            "host.json: durable functions need extensionBundle Microsoft.Azure.Functions.ExtensionBundle [4.*, 5.0.0)"
        )
    hub = ((host_json.get("extensions") or {}).get("durableTask") or {}).get("hubName")
    if hub is not None and not _HUB.match(str(hub)):
        problems.append(
            f"host.json: durableTask.hubName {hub!r} must be 3-45 letters and digits, a letter first"
        )
    return problems


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--app-root", type=Path, required=True)
    parser.add_argument("--settings", type=Path, help="JSON object of the app settings the app will have")
    parser.add_argument("--plan", choices=("flex", "other"), default="flex")
    parser.add_argument(
        "--list", action="store_true", help="print the functions and bindings as JSON, check nothing"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    app_root = args.app_root.resolve()
    if args.list:
        print(json.dumps(index(app_root)))
        return 0
    settings = json.loads(args.settings.read_text()) if args.settings else {}
    host_json = json.loads((app_root / "host.json").read_text())
    functions = index(app_root)
    problems = check(functions, settings, host_json, plan=args.plan)
    for problem in problems:
        print(problem)
    if not problems:
        print(f"ok: {len(functions)} functions, bindings valid for Azure")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
