"""`.funcignore` rules as `make package` reads them (gitignore syntax), and what they keep out."""

from __future__ import annotations

from pathlib import Path

import pytest

from scripts.package import IgnoreRules

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]


def test_gitignore_semantics() -> None:
    rules = IgnoreRules(
        ["# comment", "", "tests/", "*.pyc", "/top.txt", "docs/**/*.md", "logs", "!logs/keep"]
    )

    assert rules.ignored("tests", is_dir=True)
    assert not rules.ignored("tests", is_dir=False)  # `tests/` names folders only
    assert rules.ignored("shared/tests", is_dir=True)  # no slash inside: at any depth
    assert rules.ignored("a/b/c.pyc", is_dir=False)
    assert rules.ignored("top.txt", is_dir=False)
    assert not rules.ignored("sub/top.txt", is_dir=False)  # anchored
    assert rules.ignored("docs/a/b/x.md", is_dir=False) and rules.ignored("docs/x.md", is_dir=False)
    assert not rules.ignored("docs/x.txt", is_dir=False)
    assert rules.ignored("logs", is_dir=True)
    assert not rules.ignored("logs/keep", is_dir=False)  # the last matching rule decides


def test_an_ignored_folder_is_not_entered(tmp_path: Path) -> None:
    (tmp_path / "skip").mkdir()
    (tmp_path / "skip" / "keep.txt").write_text("x")
    (tmp_path / "app.py").write_text("x")

    files = IgnoreRules(["skip/", "!skip/keep.txt"]).files(tmp_path)

    assert [p.relative_to(tmp_path).as_posix() for p in files] == ["app.py"]


def test_the_repository_funcignore_keeps_local_and_test_files_out() -> None:
    rules = IgnoreRules.load(ROOT / ".funcignore")
    for folder in (".venv", "node_modules", "tests", "selfhost", "scripts", "infra", "bench", ".state", ".azure",
                   "deploy", "docs", ".cache", "dist", "__pycache__", "shared/__pycache__"):  # fmt: skip
        assert rules.ignored(folder, is_dir=True), folder
    for name in ("local.settings.json", "local.settings.example.json", "requirements-dev.txt", "Makefile"):
        assert rules.ignored(name, is_dir=False), name
    for name in (
        "function_app.py",
        "host.json",
        "requirements.txt",
        "shared/config.py",
        "http_api/health.py",
    ):
        assert not rules.ignored(name, is_dir=False), name
    for folder in ("shared", "http_api", "control", "orchestrators", "activities"):
        assert not rules.ignored(folder, is_dir=True), folder
