"""The configuration reference, docs/settings.md, generated from what the code reads.

    python -m scripts.settings_reference --write   # regenerate docs/settings.md
    python -m scripts.settings_reference --check   # exit 1 naming what is missing or stale

Two halves meet here. What is *read* is found in the code, never typed by hand:
1. every name `shared/config.py` (`Settings.from_env`) reads from its environment mapping (a
   parameter or local named `values` or `env`: `values.get("X")`, `values["X"]`, `"X" in values`,
   or a helper called with the mapping and the literal name, `_port(values, "SMTP_PORT", ...)`);
   and every `os.environ` read with a literal name anywhere in the app's packages;
2. every `connection` and `%Setting%` in the bindings of function_app.py's functions.
What each setting *means* is written in docs/settings.toml (one `[settings.NAME]` table each).
Where each is *set* is read from local.settings.example.json, scripts/devservers.py (`make run`),
tests/support/export_env.py (the end-to-end harness) and infra/ (the app settings Bicep gives).

`problems()` says what does not add up: a setting read but not documented, documented but read by
nothing, set somewhere but not documented, read but neither set in Azure nor explained (`azure`).
Defaults come from `Settings` itself when an entry names its `field`.
"""

from __future__ import annotations

import argparse
import ast
import functools
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scripts import infra_text

ROOT = Path(__file__).resolve().parents[1]
CATALOG = ROOT / "docs" / "settings.toml"
REFERENCE = ROOT / "docs" / "settings.md"
WRITE_COMMAND = "python -m scripts.settings_reference --write"

# Modules whose settings reader takes the environment as a mapping named as below.
SETTINGS_MODULES = ("shared/config.py",)
MAPPING_NAMES = frozenset({"values", "env"})
# Packages of the function app, scanned for direct os.environ reads.
APP_PACKAGES = ("function_app.py", "http_api", "control", "orchestrators", "activities", "shared")
EXAMPLE_SETTINGS = ROOT / "local.settings.example.json"
DEVSERVERS = ROOT / "scripts" / "devservers.py"
TEST_HARNESS = ROOT / "tests" / "support" / "export_env.py"
# Environment variables the local tools set that are not settings of the app.
NOT_SETTINGS = frozenset({"PYTHONUNBUFFERED", "PYTHONPATH"})
_NAME = re.compile(r"^[A-Z][A-Za-z0-9_]*$")
_PERCENT = re.compile(r"%([A-Za-z_][A-Za-z0-9_.:-]*)%")


@dataclass(frozen=True)
class Entry:
    """One `[settings.NAME]` of docs/settings.toml."""

    name: str
    group: str
    does: str
    default: str | None = None  # text; or `field` names the Settings attribute it comes from
    field: str | None = None
    required: bool = False
    example: str | None = None  # the value a minimal environment uses (required entries)
    reader: str | None = None  # who reads it when the code scan cannot see it (host, SDK)
    azure: str | None = None  # why infra does not set it (a documented default, local only)
    connection: bool = False  # a connection prefix: NAME__blobServiceUri etc. belong to it
    secret: bool = False  # never a literal in infra: a Key Vault reference or unset

    @classmethod
    def parse(cls, name: str, table: Mapping[str, Any]) -> Entry:
        known = set(cls.__dataclass_fields__) - {"name"}
        unknown = set(table) - known
        if unknown:
            raise ValueError(f"docs/settings.toml [settings.{name}]: unknown keys {sorted(unknown)}")
        return cls(name=name, **table)


@dataclass
class Reference:
    """Everything known about the settings: what reads them, where they are set, the catalog."""

    groups: dict[str, str]
    entries: dict[str, Entry]
    reads: dict[str, list[str]]  # name -> who reads it ("`Settings`", "`%X%` in `f`", a module)
    connections: set[str]  # binding connection names (prefixes)
    example: dict[str, str]  # local.settings.example.json Values
    make_run: dict[str, str | None]  # name -> constant value, or None when computed
    tests: dict[str, str | None]
    infra: dict[str, str]  # app setting -> Bicep source text of its value
    infra_params: dict[str, infra_text.Param] = field(default_factory=dict)
    parameters_file: dict[str, object] = field(default_factory=dict)

    def documented(self, name: str) -> bool:
        if name in self.entries:
            return True
        prefix, sep, _ = name.partition("__")
        return bool(sep) and prefix in self.entries and self.entries[prefix].connection

    def set_in_infra(self, name: str) -> bool:
        entry = self.entries.get(name)
        if entry is not None and entry.connection:
            return any(k == name or k.startswith(name + "__") for k in self.infra)
        return name in self.infra


# -- what the code reads --------------------------------------------------------------------


def settings_reads(path: Path) -> set[str]:
    """Names a settings module reads from its environment mapping (see the module docstring)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        found.update(_names_read(node))
    return {name for name in found if _NAME.match(name)}


def _is_mapping(node: ast.AST) -> bool:
    if isinstance(node, ast.Name):
        return node.id in MAPPING_NAMES
    return _is_os_environ(node)


def _is_os_environ(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "environ"
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
    )


def _literal(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _names_read(node: ast.AST) -> Iterator[str]:
    if isinstance(node, ast.Subscript) and _is_mapping(node.value):
        name = _literal(node.slice)
        if name:
            yield name
    elif isinstance(node, ast.Compare) and any(isinstance(op, ast.In | ast.NotIn) for op in node.ops):
        if any(_is_mapping(c) for c in node.comparators):
            name = _literal(node.left)
            if name:
                yield name
    elif isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and _is_mapping(func.value) and node.args:
            name = _literal(node.args[0])
            if name and func.attr in ("get", "pop", "setdefault"):
                yield name
        elif any(_is_mapping(a) for a in node.args):
            # A helper given the mapping and the name: _optional(values, "MAIL_FROM", check).
            yield from (name for a in node.args if (name := _literal(a)))


def environ_reads(root: Path = ROOT) -> dict[str, list[str]]:
    """Literal `os.environ[...]`, `os.environ.get(...)` and `os.getenv(...)` reads in the app."""
    out: dict[str, list[str]] = {}
    for path in _python_files(root, APP_PACKAGES):
        rel = path.relative_to(root).as_posix()
        if rel in SETTINGS_MODULES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            name = None
            if isinstance(node, ast.Subscript) and _is_os_environ(node.value):
                name = _literal(node.slice)
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                environ_get = (
                    isinstance(func, ast.Attribute) and func.attr == "get" and _is_os_environ(func.value)
                )
                if environ_get or (isinstance(func, ast.Attribute) and func.attr == "getenv"):
                    name = _literal(node.args[0])
            if name and _NAME.match(name):
                out.setdefault(name, []).append(f"`{rel}`")
    return out


def _python_files(root: Path, packages: Sequence[str]) -> Iterator[Path]:
    for package in packages:
        path = root / package
        if path.is_file():
            yield path
        elif path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if "__pycache__" not in p.parts)


def binding_reads(
    functions: Iterable[tuple[str, list[dict[str, Any]]]],
) -> tuple[dict[str, list[str]], set[str]]:
    """(`%Name%` settings -> where, connection names) of (function name, bindings) pairs."""
    reads: dict[str, list[str]] = {}
    connections: set[str] = set()
    for name, bindings in functions:
        for binding in bindings:
            for key, value in binding.items():
                if not isinstance(value, str):
                    continue
                for setting in _PERCENT.findall(value):
                    reads.setdefault(setting, []).append(f"`%{setting}%` ({key} of `{name}`)")
                if key == "connection" and value and value != "AzureWebJobsStorage":
                    connections.add(value)
                    reads.setdefault(value, []).append(f"connection of `{name}`")
    return reads, connections


@functools.cache
def _indexed(root: Path) -> str:
    # In a child process: a second get_functions() on one app fails, and a test run may have put
    # another app under the name function_app (the self-hosted runtime's in-process tests).
    result = subprocess.run(
        [sys.executable, "-I", str(root / "scripts" / "check_bindings.py"), "--app-root", str(root), "--list"],
        cwd=root, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"indexing function_app.py failed:\n{result.stdout}{result.stderr}")
    return result.stdout


def app_functions(root: Path = ROOT) -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, bindings as the worker sends them) of every function of function_app.py."""
    return [(str(name), list(bindings)) for name, bindings in json.loads(_indexed(root))]


# -- where settings are set -----------------------------------------------------------------


def example_values(path: Path = EXAMPLE_SETTINGS) -> dict[str, str]:
    values = json.loads(path.read_text()).get("Values", {})
    return {str(k): str(v) for k, v in values.items()}


def devservers_values(path: Path = DEVSERVERS) -> dict[str, str | None]:
    """What `make run` puts in the runtime's environment: LOCAL_DEFAULTS, `env["X"] = ...`,
    `env.setdefault("X", ...)` and the dicts the `*_environment` helpers return."""
    out: dict[str, str | None] = {}
    tree = ast.parse(path.read_text(), str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "LOCAL_DEFAULTS" for t in node.targets
        ):
            out.update(_dict_literal(node.value))
        elif isinstance(node, ast.FunctionDef) and node.name.endswith("_environment"):
            for inner in ast.walk(node):
                if isinstance(inner, ast.Assign):
                    for target in inner.targets:
                        if isinstance(target, ast.Subscript) and (name := _literal(target.slice)):
                            out[name] = _literal(inner.value)
                elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
                    if inner.func.attr == "setdefault" and inner.args and (name := _literal(inner.args[0])):
                        out[name] = _literal(inner.args[1]) if len(inner.args) > 1 else None
                elif isinstance(inner, ast.Return) and inner.value is not None:
                    out.update(_dict_literal(inner.value))
    return {k: v for k, v in out.items() if _NAME.match(k) and k not in NOT_SETTINGS}


def harness_values(path: Path = TEST_HARNESS) -> dict[str, str | None]:
    """Settings the end-to-end harness gives the runtime: keys of its dict literals."""
    out: dict[str, str | None] = {}
    if not path.exists():
        return out
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Dict):
            out.update(_dict_literal(node))
    return {k: v for k, v in out.items() if _NAME.match(k) and k not in NOT_SETTINGS}


def _dict_literal(node: ast.AST) -> dict[str, str | None]:
    if not isinstance(node, ast.Dict):
        return {}
    return {
        name: _literal(v) for k, v in zip(node.keys, node.values, strict=True) if k and (name := _literal(k))
    }


# -- the reference --------------------------------------------------------------------------


def load_catalog(path: Path = CATALOG) -> tuple[dict[str, str], dict[str, Entry]]:
    document = tomllib.loads(path.read_text())
    groups = {str(k): str(v) for k, v in document.get("groups", {}).items()}
    entries = {name: Entry.parse(name, table) for name, table in document.get("settings", {}).items()}
    return groups, entries


def build(root: Path = ROOT) -> Reference:
    groups, entries = load_catalog(root / "docs" / "settings.toml")
    reads: dict[str, list[str]] = {}
    for module in SETTINGS_MODULES:
        for name in settings_reads(root / module):
            reads.setdefault(name, []).append("`Settings`")
    for name, where in environ_reads(root).items():
        reads.setdefault(name, []).extend(where)
    binding, connections = binding_reads(app_functions(root))
    for name, where in binding.items():
        reads.setdefault(name, []).extend(where)
    infra = root / "infra"
    return Reference(
        groups=groups,
        entries=entries,
        reads=reads,
        connections=connections,
        example=example_values(root / "local.settings.example.json"),
        make_run=devservers_values(root / "scripts" / "devservers.py"),
        tests=harness_values(root / "tests" / "support" / "export_env.py"),
        infra=infra_text.app_settings(infra),
        infra_params=infra_text.Bicep.load(infra / "main.bicep").params(),
        parameters_file=infra_text.parameters_file(infra),
    )


def problems(ref: Reference) -> list[str]:
    """Everything that keeps the reference from being complete and true, one sentence each."""
    out: list[str] = []
    how = f"then run `{WRITE_COMMAND}`"
    for name in sorted(ref.reads):
        if name not in ref.entries:
            out.append(
                f"{name} is read by {', '.join(ref.reads[name])} but has no [settings.{name}] in "
                f"docs/settings.toml: add one (group, does, field or default, azure if infra does not set it), {how}"
            )
    for name, entry in sorted(ref.entries.items()):
        if entry.group not in ref.groups:
            out.append(f"[settings.{name}] has group {entry.group!r}, which is not in [groups]")
        if entry.reader is None and name not in ref.reads:
            out.append(
                f"[settings.{name}] documents a setting nothing reads: remove it, or say who reads it (reader = ...)"
            )
        if entry.field is not None and entry.default is not None:
            out.append(
                f"[settings.{name}] has both field and default: keep field (the default comes from Settings)"
            )
        if entry.required and entry.example is None:
            out.append(f"[settings.{name}] is required: give the example a minimal environment uses")
        if name in ref.reads and entry.reader is None:
            in_infra = ref.set_in_infra(name)
            if not in_infra and not entry.azure:
                out.append(
                    f"{name} is not set by infra: set it in the appSettings of infra/main.bicep (a parameter "
                    f'and main.parameters.json entry if operators choose it), or explain the default with azure = "..."'
                )
            if in_infra and entry.azure:
                out.append(f"[settings.{name}] says why infra does not set it (azure), but infra sets it")
        if entry.secret:
            literal = infra_text.string_literal(ref.infra.get(name, "''"))
            if literal:
                out.append(f"{name} is a secret but infra sets it to a literal: use a Key Vault reference")
    for name in sorted(ref.connections):
        connection = ref.entries.get(name)
        if connection is not None and not connection.connection:
            out.append(f"[settings.{name}] is a binding connection: mark it connection = true")
    where_set: list[tuple[str, Mapping[str, object]]] = [
        ("local.settings.example.json", ref.example),
        ("scripts/devservers.py (make run)", ref.make_run),
        ("tests/support/export_env.py", ref.tests),
        ("infra (app settings)", ref.infra),
    ]
    for source, names in where_set:
        for name in sorted(names):
            if not ref.documented(name):
                out.append(f"{name} is set in {source} but not documented in docs/settings.toml, {how}")
    try:
        defaults(ref)
    except (AttributeError, ValueError, KeyError) as exc:
        out.append(str(exc))
    return out


def defaults(ref: Reference) -> dict[str, str]:
    """Each entry's default as shown: from Settings (field), the catalog text, or `required`."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from shared.config import Settings, SettingsError

    minimal = {name: e.example for name, e in ref.entries.items() if e.required and e.example is not None}
    try:
        settings = Settings.from_env(minimal)
    except SettingsError as exc:
        raise ValueError(
            f"Settings.from_env fails on the required entries' examples ({exc}): mark {exc.setting} "
            "required = true with an example in docs/settings.toml"
        ) from None
    out: dict[str, str] = {}
    for name, entry in ref.entries.items():
        if entry.required:
            out[name] = "required"
        elif entry.field is not None:
            if not hasattr(settings, entry.field):
                raise AttributeError(
                    f"[settings.{name}] names field {entry.field!r}, which Settings does not have"
                )
            value = _format_default(getattr(settings, entry.field), name)
            out[name] = value if value in ("unset", "empty") else f"`{value}`"
        else:
            out[name] = " ".join((entry.default or "unset").split())
    return out


def _format_default(value: object, name: str) -> str:
    if value is None or value == "" or value == () or value == frozenset():
        return "unset" if value is None else "empty"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | int | Path):
        return str(value)
    if isinstance(value, frozenset | set):
        return ",".join(sorted(str(v) for v in value))
    if isinstance(value, tuple | list) and all(isinstance(v, str | int) for v in value):
        return ",".join(str(v) for v in value)
    raise ValueError(
        f"[settings.{name}]: the default of its field cannot be shown; write `default` instead of `field`"
    )


# -- rendering ------------------------------------------------------------------------------

INTRO = """\
# Configuration reference

<!-- Generated by `{command}` from docs/settings.toml and the code; edit those, not this file. -->

Every setting the service reads: the app's own (read once, at the first request, by
`Settings.from_env` in `shared/config.py`, which fails naming the setting), those its function
bindings name (`%Setting%`, `connection`), and those the Functions host and the Azure SDKs read.
An empty value counts as unset. `tests/deploy/test_settings_reference.py` fails when this page
and the code disagree.

**Locally** (`make run`, `python -m selfhost`) settings are the `Values` of `local.settings.json`,
which `make run` creates from `local.settings.example.json`; an environment variable of the same
name wins. `make run` adds a few to the runtime's environment (the Azurite connection and SMTP
port on non-default ports, the local secret folder, the front door's key, and `LOCAL_DEFAULTS` that
`local.settings.json` lacks). The one-machine service (`make service-install`) reads the same, plus
the environment file of its systemd unit. The end-to-end tests set theirs in
`tests/support/export_env.py`.

**In Azure** they are the function app's app settings, set by `infra/` on every `azd provision`
(`azd up`). An operator changes one with `azd env set NAME value` then `azd provision`: the
`azd env` name of each parameter is in `infra/main.parameters.json` and shown below. A change
made in the portal (Settings > Environment variables) works at once but lasts only until the next
`azd provision`, which writes the whole set again. JSON settings go base64-encoded
(`azd env set AUTO_EXPORT_CONFIG_BASE64 "$(base64 -w0 auto-export.json)"`). Secrets are never app
setting values: the app keeps them in Key Vault and settings name them, or an app setting is a
Key Vault reference, `@Microsoft.KeyVault(SecretUri=https://<vault>.vault.azure.net/secrets/<name>/)`.
"""


def render(ref: Reference) -> str:
    shown = defaults(ref)
    lines = [INTRO.format(command=WRITE_COMMAND)]
    for group, title in ref.groups.items():
        members = [e for e in ref.entries.values() if e.group == group]
        if not members:
            continue
        lines += [
            f"## {title}",
            "",
            "| setting | default | what it does | read by | local | Azure |",
            "|---|---|---|---|---|---|",
        ]
        for entry in members:
            row = [
                f"`{entry.name}`",
                shown[entry.name],
                " ".join(entry.does.split()),
                ", ".join(dict.fromkeys(ref.reads.get(entry.name, []))) or (entry.reader or ""),
                _local(ref, entry.name),
                _azure(ref, entry),
            ]
            lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _short(value: str | None) -> str:
    if value is None:
        return "set"
    if value == "":
        return "empty"
    return f"`{value}`" if len(value) <= 40 else "set"


def _local(ref: Reference, name: str) -> str:
    parts = []
    for label, values in (("example", ref.example), ("make run", ref.make_run), ("tests", ref.tests)):
        keys = [k for k in values if k == name or k.startswith(name + "__")]
        if name in values:
            parts.append(f"{label}: {_short(values[name])}")
        elif keys:
            parts.append(f"{label}: {', '.join(f'`{k}`' for k in keys)}")
    return "; ".join(parts) or "not set"


def _azure(ref: Reference, entry: Entry) -> str:
    keys = [k for k in ref.infra if k == entry.name or (entry.connection and k.startswith(entry.name + "__"))]
    if not keys:
        return " ".join((entry.azure or "not set").split())
    parts = []
    for key in keys:
        expr = ref.infra[key]
        literal = infra_text.string_literal(expr)
        shown = (
            f"`{literal}`"
            if literal is not None
            else _azd_env(ref, expr) or f"infra: `{' '.join(expr.split())}`"
        )
        parts.append(shown if key == entry.name else f"`{key}`: {shown}")
    return "; ".join(parts)


def _azd_env(ref: Reference, expr: str) -> str | None:
    """`azd env NAME` (default) for the main.bicep parameters an expression uses, if any."""
    out = []
    for word in dict.fromkeys(re.findall(r"\b[A-Za-z_]\w*\b", expr)):
        value = ref.parameters_file.get(word)
        param = ref.infra_params.get(word)
        if param is None:
            continue
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", value) if isinstance(value, str) else None
        if match:
            default = match.group(2) or ""
            out.append(f"azd env `{match.group(1)}`" + (f" (default `{default}`)" if default else ""))
        else:
            default_text = infra_text.string_literal(param.default or "")
            out.append(f"param `{word}`" + (f" (`{default_text}`)" if default_text else ""))
    return "; ".join(out) or None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="regenerate docs/settings.md")
    mode.add_argument(
        "--check", action="store_true", help="exit 1 if docs/settings.md is incomplete or stale"
    )
    args = parser.parse_args(argv)
    ref = build()
    found = problems(ref)
    if found:
        print("\n".join(f"- {p}" for p in found), file=sys.stderr)
        return 1
    text = render(ref)
    if args.write:
        REFERENCE.write_text(text)
        print(f"wrote {REFERENCE.relative_to(ROOT)}")
    elif args.check:
        if not REFERENCE.exists() or REFERENCE.read_text() != text:
            print(f"docs/settings.md is stale: run `{WRITE_COMMAND}`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
