"""Fixtures of the deployment tests: the app's functions and bindings, indexed once."""

from __future__ import annotations

from typing import Any

import pytest

from scripts.settings_reference import app_functions


@pytest.fixture(scope="session")
def functions() -> list[tuple[str, list[dict[str, Any]]]]:
    """(name, bindings) of every function of function_app.py, as the worker sends them."""
    return app_functions()
