"""Read what the Bicep templates under infra/ declare, from their text: the Bicep compiler cannot
be installed here, so the offline checks (tests/deploy/test_infra.py) and the configuration
reference (scripts/settings_reference.py) read parameters, outputs, modules and the app settings
with this small scanner.

It understands the subset infra/ is written in: one declaration per line (`param`, `output`,
`module`, `resource`, `var`), objects with one property per line or comma-separated on one line,
single-quoted strings (with `${...}` interpolation) and `//` comments. It evaluates nothing: values
are kept as their source text. Standard library only.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "Bicep",
    "Module",
    "Param",
    "app_setting_values",
    "app_settings",
    "array_items",
    "block_after",
    "object_entries",
    "parameter_default",
    "parameters_file",
    "string_literal",
]

ROOT = Path(__file__).resolve().parents[1]
INFRA = ROOT / "infra"

_PARAM = re.compile(r"^param\s+(\w+)\s+(\w+)(?:\s*=\s*(.+?))?\s*$")
_OUTPUT = re.compile(r"^output\s+(\w+)\s+(\w+)\s*=\s*(.+?)\s*$")
_MODULE = re.compile(r"^module\s+(\w+)\s+'([^']+)'\s*=")
_KEY = re.compile(r"^\s*(?:'([^']+)'|([A-Za-z_][\w-]*))\s*:\s*(.*?)\s*$", re.S)
_OUTPUT_REF = re.compile(r"\b(\w+)\.outputs\.(\w+)")


@dataclass(frozen=True)
class Param:
    name: str
    type: str
    default: str | None  # source text of the default; None: the parameter is required
    decorators: tuple[str, ...] = ()

    @property
    def secure(self) -> bool:
        return any(d.startswith("@secure(") for d in self.decorators)


@dataclass(frozen=True)
class Module:
    symbol: str
    path: str  # relative to the declaring file
    params: dict[str, str] = field(default_factory=dict)  # name -> source text of the value


@dataclass(frozen=True)
class Bicep:
    """One .bicep file's declarations."""

    path: Path
    text: str

    @classmethod
    def load(cls, path: Path) -> Bicep:
        return cls(path, path.read_text())

    @property
    def lines(self) -> list[str]:
        return self.text.splitlines()

    def params(self) -> dict[str, Param]:
        out: dict[str, Param] = {}
        decorators: list[str] = []
        for line in self.lines:
            stripped = _strip_comment(line).strip()
            if stripped.startswith("@"):
                decorators.append(stripped)
                continue
            match = _PARAM.match(stripped)
            if match:
                name, kind, default = match.groups()
                out[name] = Param(name, kind, default, tuple(decorators))
            if stripped:
                decorators = []
        return out

    def outputs(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for line in self.lines:
            match = _OUTPUT.match(_strip_comment(line).strip())
            if match:
                out[match.group(1)] = match.group(3)
        return out

    def modules(self) -> dict[str, Module]:
        out: dict[str, Module] = {}
        for index, line in enumerate(self.lines):
            match = _MODULE.match(line.strip())
            if not match:
                continue
            symbol, path = match.groups()
            body = block_after("\n".join(self.lines[index:]), 0)
            params_at = re.search(r"^\s*params\s*:\s*\{", body, re.M)
            params = object_entries(block_after(body, params_at.start())) if params_at else {}
            out[symbol] = Module(symbol, path, params)
        return out

    def output_references(self) -> set[tuple[str, str]]:
        """(symbol, output) for every `symbol.outputs.name` in the file."""
        return set(_OUTPUT_REF.findall(_without_comments(self.text)))

    def block(self, opener: str) -> str:
        """The inside of the `{...}` that starts on the first line matching regex `opener`."""
        match = re.search(opener, self.text, re.M)
        if match is None:
            raise LookupError(f"{self.path.name}: nothing matches {opener!r}")
        return block_after(self.text, match.start())


def block_after(text: str, start: int) -> str:
    """The inside of the first `{...}` (or `[...]`) at or after `start`, strings and comments skipped."""
    opening = None
    depth = 0
    i = start
    while i < len(text):
        ch = text[i]
        if ch == "'":
            i = _skip_string(text, i)
            continue
        if text.startswith("//", i):
            i = text.find("\n", i)
            if i < 0:
                break
            continue
        if ch in "{[":
            if opening is None:
                opening = i
            depth += 1
        elif ch in "}]":
            depth -= 1
            if opening is not None and depth == 0:
                return text[opening + 1 : i]
        i += 1
    raise ValueError("unbalanced braces")


def object_entries(inner: str) -> dict[str, str]:
    """`{key: value}` entries of an object's inside (top level only), values as source text."""
    entries: dict[str, str] = {}
    for part in _split_top_level(inner):
        match = _KEY.match(part)
        if match:
            entries[match.group(1) or match.group(2)] = match.group(3)
    return entries


def array_items(inner: str) -> list[str]:
    """The items of an array's inside (top level only), as source text."""
    return _split_top_level(inner)


def string_literal(expr: str) -> str | None:
    """The value of a plain Bicep string literal (no interpolation), else None."""
    expr = expr.strip()
    if len(expr) >= 2 and expr[0] == expr[-1] == "'" and "${" not in expr:
        body = expr[1:-1]
        if "'" not in body.replace("\\'", ""):
            return body.replace("\\'", "'").replace("\\\\", "\\")
    return None


def app_settings(infra: Path = INFRA) -> dict[str, str]:
    """Every app setting infra gives the function app: name -> source text of its value.

    They are the entries of the `var ...Settings = {...}` objects of app/function.bicep (the
    host's own settings) and of the `appSettings: {...}` that main.bicep passes to that module.
    """
    function = Bicep.load(infra / "app" / "function.bicep")
    settings: dict[str, str] = {}
    for match in re.finditer(r"^var\s+\w*[sS]ettings\s*=\s*\{", function.text, re.M):
        settings.update(object_entries(block_after(function.text, match.start())))
    main = Bicep.load(infra / "main.bicep")
    module = next((m for m in main.modules().values() if m.path == "app/function.bicep"), None)
    if module is None:
        raise LookupError("main.bicep does not use app/function.bicep")
    passed = module.params.get("appSettings", "")
    if passed.startswith("{"):
        settings.update(object_entries(block_after(passed, 0)))
    return settings


def app_setting_values(infra: Path = INFRA, *, computed: str = "<computed>") -> dict[str, str]:
    """The app settings as Azure will have them with every azd env value left at its default.

    A literal is its value; a main.bicep parameter its default (the `${VAR=default}` of
    main.parameters.json, else the Bicep default); anything else (`keyVault.outputs.uri`, an
    interpolation) is `computed`, which stands for "set, to a value known only at deployment".
    """
    main = Bicep.load(infra / "main.bicep")
    params = main.params()
    given = parameters_file(infra)
    out: dict[str, str] = {}
    for name, expr in app_settings(infra).items():
        literal = string_literal(expr)
        if literal is not None:
            out[name] = literal
        elif expr in params:
            out[name] = parameter_default(params[expr], given.get(expr))
        else:
            out[name] = computed
    return out


def parameter_default(param: Param, given: object) -> str:
    """The value a parameter gets when its azd env variable is unset."""
    if isinstance(given, str):
        match = re.fullmatch(r"\$\{(\w+)(?:=(.*))?\}", given)
        if match is None:
            return given
        if match.group(2) is not None:
            return match.group(2)
    literal = string_literal(param.default or "")
    return literal or ""


def parameters_file(infra: Path = INFRA) -> dict[str, object]:
    """The `parameters` of main.parameters.json: name -> its `value`."""
    document = json.loads((infra / "main.parameters.json").read_text())
    return {name: spec.get("value") for name, spec in document.get("parameters", {}).items()}


def _skip_string(text: str, i: int) -> int:
    """Index after the single-quoted string starting at `i` (`\\'` escapes a quote)."""
    if text.startswith("'''", i):
        end = text.find("'''", i + 3)
        return len(text) if end < 0 else end + 3
    j = i + 1
    while j < len(text):
        if text[j] == "\\":
            j += 2
            continue
        if text[j] == "'":
            return j + 1
        j += 1
    return j


def _split_top_level(inner: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    current: list[str] = []
    i = 0
    while i < len(inner):
        ch = inner[i]
        if ch == "'":
            end = _skip_string(inner, i)
            current.append(inner[i:end])
            i = end
            continue
        if inner.startswith("//", i):
            end = inner.find("\n", i)
            i = len(inner) if end < 0 else end
            continue
        if ch in "{[(":
            depth += 1
        elif ch in "}])":
            depth -= 1
        if depth == 0 and ch in "\n,":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


def _strip_comment(line: str) -> str:
    i = 0
    while i < len(line):
        if line[i] == "'":
            i = _skip_string(line, i)
            continue
        if line.startswith("//", i):
            return line[:i]
        i += 1
    return line


def _without_comments(text: str) -> str:
    return "\n".join(_strip_comment(line) for line in text.splitlines())
