"""`make package`: the zip holds the app and nothing local, and it runs on requirements.txt alone.

The check installs only requirements.txt (pinned by constraints.txt) into a clean virtual
environment, cached per requirements hash under .cache/package-venvs/, then imports function_app
from the unpacked zip with nothing else on the path and checks every binding for Azure with the
app settings infra/ gives (scripts/check_bindings.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from scripts import package

pytestmark = pytest.mark.slow  # the first run installs requirements.txt into a new venv

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("shared/", "http_api/", "control/", "orchestrators/", "activities/")
NEVER = ("tests/", "selfhost/", "scripts/", "infra/", "bench/", "deploy/", "docs/", ".venv/", "node_modules/",
         ".state/", ".cache/", ".azure/", "dist/")  # fmt: skip


def test_the_zip_holds_the_app_and_nothing_local(tmp_path: Path) -> None:
    output = tmp_path / "app.zip"
    names = package.build(output)

    assert {"function_app.py", "host.json", "requirements.txt"} <= set(names)
    for prefix in APP_PACKAGES:
        assert any(n.startswith(prefix) for n in names), prefix
    leaked = [n for n in names if n.startswith(NEVER) or "__pycache__" in n or n.startswith("local.settings")]
    assert leaked == []
    with zipfile.ZipFile(output) as archive:
        assert sorted(archive.namelist()) == sorted(names)
    again = tmp_path / "again.zip"
    package.build(again)
    assert again.read_bytes() == output.read_bytes(), "the same tree must give the same zip"


def test_the_package_imports_and_its_bindings_are_valid_on_requirements_txt_alone(tmp_path: Path) -> None:
    output = tmp_path / "app.zip"
    package.build(output)

    result = package.check(output, tmp_path)

    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    assert "bindings valid for Azure" in result.stdout
    venv = package.clean_venv()
    assert (venv / ".complete").exists()
    site = next((venv / "lib").glob("python3*/site-packages"))
    # (psutil is not among them: azure-monitor-opentelemetry, a runtime package, needs it.)
    for dev_only in ("pytest", "aiohttp_cors", "hypothesis", "ruff", "wsgidav", "playwright"):
        assert not any(site.glob(f"{dev_only}*")), f"{dev_only} is in the clean environment"
