"""Helpers of the browser tests (tests/web/): where chromium is, how a person enters the key,
screenshots, and setting up data beside the pages.

Debian's chromium is driven by playwright through `executable_path`: `playwright install`
downloads browsers, which cannot be reached here. Screenshots go to `.state/screenshots/`
(git-ignored); with WEB_SCREENSHOTS_DOCS=1 they are also copied to `docs/screenshots/`, the
README's copies.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import httpx
from azure.storage.blob import ContainerClient
from playwright.sync_api import Page, expect

from tests.support.azurite import Azurite
from tests.support.export_env import ROOT

__all__ = ["CHROMIUM", "CHROMIUM_FLAGS", "SESSION_APP", "open_with_key", "screenshot", "submit", "upload"]

CHROMIUM = Path(os.environ.get("WEB_TEST_CHROMIUM", "/usr/bin/chromium"))
# --no-sandbox: tests may run as root (containers, CI), where chromium's sandbox refuses to start.
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
SCREENSHOTS = ROOT / ".state" / "screenshots"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
SESSION_APP = "recon"  # the one auto-export app of the browser tests' service


def open_with_key(page: Page, path: str, key: str) -> None:
    """Open `path` and enter `key` in the header form, as a person does once per tab."""
    page.goto(path)
    if page.locator("#key-entry").is_visible():
        page.get_by_label("Access key").fill(key)
        page.get_by_role("button", name="Use key").click()
    expect(page.locator("#key-set")).to_be_visible()


def screenshot(page: Page, name: str, *, for_docs: bool = True) -> Path:
    """`.state/screenshots/<name>.png` (whole page); with WEB_SCREENSHOTS_DOCS=1 also
    `docs/screenshots/<name>.png` when it is one of the README's (`for_docs`)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if for_docs and os.environ.get("WEB_SCREENSHOTS_DOCS") == "1":
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, DOCS_SCREENSHOTS / f"{name}.png")
    return path


def upload(azurite: Azurite, container: str, files: dict[str, bytes]) -> None:
    with ContainerClient.from_connection_string(azurite.connection_string, container) as c:
        if not c.exists():
            c.create_container()
        for name, data in files.items():
            c.upload_blob(name, data, overwrite=True)


def submit(api: httpx.Client, body: dict[str, Any]) -> str:
    r = api.post("/api/batches", json=body)
    assert r.status_code == 202, r.text
    return str(r.json()["id"])
