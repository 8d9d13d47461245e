"""Fixtures of the browser tests: the whole service (as tests/e2e/test_batches.py runs it, with a
local root and one auto-export app), a WebDAV server as the PUT destination, and Debian's headless
chromium driven by playwright through `executable_path` (reference facts: `playwright install`
downloads browsers, which cannot be reached here).

Chromium missing is a failure, not a skip: `make test` installs it (the Makefile's `browser`
step). The helpers the tests share are in `tests/support/browser.py`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.support.azurite import Azurite
from tests.support.browser import CHROMIUM, CHROMIUM_FLAGS, SESSION_APP
from tests.support.export_env import start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.webdav_server import WebDavTestServer


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:  # the service wants a default source; unused here
        yield server


@pytest.fixture(scope="module")
def dav() -> Iterator[WebDavTestServer]:
    with WebDavTestServer() as server:
        yield server


@pytest.fixture(scope="module")
def local_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """BATCH_LOCAL_ROOT: lab/run-1/{a,b}.bin, lab/run-1/sub/c.bin, lab/notes.txt, and a link
    lab/escape to a folder outside the root."""
    base = tmp_path_factory.mktemp("local")
    root = base / "root"
    (root / "lab" / "run-1" / "sub").mkdir(parents=True)
    for name, size in (("a.bin", 3000), ("b.bin", 4000), ("sub/c.bin", 5000)):
        (root / "lab" / "run-1" / name).write_bytes(os.urandom(size))
    (root / "lab" / "notes.txt").write_text("notes\n")
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text("not yours\n")
    os.symlink(base / "outside", root / "lab" / "escape")
    return root


@pytest.fixture(scope="module")
def service(
    azurite: Azurite,
    fhir: FhirTestServer,
    dav: WebDavTestServer,
    local_root: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[RuntimeProcess]:
    put = {"kind": "http_put", "base_url": dav.base_url, "create_parents": True}
    auto_export = {"apps": {SESSION_APP: {
        "destination": {**put, "url_template": "{base}/{app}/{session}/{path}"},
        "rules": [{"name": "no-temp", "action": "exclude", "names": ["*.tmp"]}],
        "options": {"retry": {"first_retry_interval_ms": 300, "max_attempts": 4}}}}}  # fmt: skip
    rt = start_service(
        azurite,
        fhir,
        tmp_path_factory.mktemp("web"),
        BATCH_LOCAL_ROOT=str(local_root),
        AUTO_EXPORT_CONFIG=json.dumps(auto_export),
        DESTINATION_CONTAINERS="exports,delivered-web",  # the Blob destinations these tests write
    )
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture(scope="module")
def api(service: RuntimeProcess) -> Iterator[httpx.Client]:
    """The JSON API with the function key, for what a test sets up beside the pages."""
    with httpx.Client(
        base_url=service.base_url, timeout=30, headers={"x-functions-key": service.function_key}
    ) as client:
        yield client


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make test` installs it; or `make browser`)",
            pytrace=False,
        )
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def page(browser: Browser, service: RuntimeProcess) -> Iterator[Page]:
    """A fresh tab (its own sessionStorage: no key yet) on the service, desktop width."""
    context = browser.new_context(base_url=service.base_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    # A Content Security Policy refusal (an inline script or style, another origin) is a bug too.
    tab.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"the page's scripts failed: {errors}"
