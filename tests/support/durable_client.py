"""HTTP helpers for driving a runtime process that hosts tests/apps/durable_app."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.apps import app_root
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

TERMINAL = {"Completed", "Failed", "Terminated", "Canceled"}


class DurableApp:
    def __init__(self, runtime: RuntimeProcess) -> None:
        self.rt = runtime
        self.http = httpx.Client(timeout=30)

    @property
    def key(self) -> str:
        return self.rt.function_key

    def start(self, orchestrator: str, payload: Any = None) -> dict[str, Any]:
        """Start through the app's HTTP starter (SDK client start_new + create_check_status_response)."""
        body = b"" if payload is None else json.dumps(payload).encode()
        r = self.http.post(
            self.rt.url(f"api/orchestrators/{orchestrator}"), params={"code": self.key}, content=body
        )
        assert r.status_code == 202, r.text
        return dict(r.json())

    def client(self, op: str, instance_id: str = "", method: str = "POST", **kw: Any) -> Any:
        url = self.rt.url(f"api/client/{op}/{instance_id}".rstrip("/"))
        r = self.http.request(method, url, headers={"x-functions-key": self.key}, **kw)
        assert r.status_code < 300, (r.status_code, r.text)
        return r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text

    def status(self, status_url: str) -> httpx.Response:
        return self.http.get(status_url)

    def wait(self, started: dict[str, Any], timeout: float = 60) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            body = dict(self.http.get(started["statusQueryGetUri"]).json())
            return body if body["runtimeStatus"] in TERMINAL else None

        return wait_until(done, timeout=timeout, interval=0.05, message=f"instance {started['id']} to finish")

    def wait_status(self, started: dict[str, Any], status: str, timeout: float = 30) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            body = dict(self.http.get(started["statusQueryGetUri"]).json())
            return body if body["runtimeStatus"] == status else None

        return wait_until(reached, timeout=timeout, interval=0.05, message=f"{started['id']} to be {status}")


@contextmanager
def running_durable_app(state_dir: Path, env: Mapping[str, str] | None = None) -> Iterator[DurableApp]:
    """The runtime process hosting tests/apps/durable_app, with a client for it; stopped on exit."""
    rt = RuntimeProcess(app_root("durable_app"), state_dir, env=dict(env or {}))
    rt.start()
    client = DurableApp(rt)
    try:
        yield client
    finally:
        client.http.close()
        rt.stop()
