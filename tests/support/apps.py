"""Load a test app's function_app.py under a unique module name (several apps in one session)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

APPS = Path(__file__).resolve().parents[1] / "apps"


def load_app_module(name: str) -> ModuleType:
    path = APPS / name / "function_app.py"
    spec = importlib.util.spec_from_file_location(f"testapp_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def app_root(name: str) -> Path:
    return APPS / name
