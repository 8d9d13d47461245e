"""End to end: the caps on running jobs, with MAX_RUNNING_JOBS_PER_USER=1. One user's batches run
one at a time in submission order and all succeed, the waiting ones `queued` saying why; another
user's batch is not held back; cancelling a waiting batch ends it `cancelled` at once, and the
next one starts when its turn comes. With MAX_OPEN_JOBS_PER_USER=3 a fourth unfinished batch of
one user is refused with 429, and accepted once one of the three has ended. The destination is a PUT server that holds each upload
until the test lets it through, so "running" lasts exactly as long as the test says."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_batches import FAST_RETRY, start, status, upload, wait
from tests.support.azurite import Azurite
from tests.support.export_env import ExportClient, start_service
from tests.support.fhir_server import FhirTestServer
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

HOLD_LIMIT_S = 60.0  # a held upload goes through after this anyway, so a failing test cannot hang


class HoldingPutServer:
    """Answers OPTIONS (the destination check) and PUT on 127.0.0.1; a PUT under a held folder
    (`/{folder}/...`) waits until `release(folder)`. `arrived` lists the folders in PUT order."""

    def __init__(self) -> None:
        self.arrived: list[str] = []
        self._gates: dict[str, threading.Event] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/up"

    def hold(self, *folders: str) -> None:
        with self._lock:
            self._gates.update({f: threading.Event() for f in folders})

    def release(self, folder: str) -> None:
        with self._lock:
            self._gates[folder].set()

    def _gate(self, folder: str) -> threading.Event | None:
        with self._lock:
            self.arrived.append(folder)
            return self._gates.get(folder)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_OPTIONS(self) -> None:  # noqa: N802 - http.server's naming
                self._answer(200)

            def do_HEAD(self) -> None:  # noqa: N802
                self._answer(405)  # the destination then does not verify lengths

            def do_PUT(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                gate = server._gate(self.path.removeprefix("/up/").split("/")[0])
                if gate is not None:
                    gate.wait(HOLD_LIMIT_S)
                self._answer(201)

            def _answer(self, code: int) -> None:
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
                pass

        return Handler

    def __enter__(self) -> HoldingPutServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            for gate in self._gates.values():
                gate.set()
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    with FhirTestServer({"Patient": 1}) as server:  # the service wants a default source; unused here
        yield server


@pytest.fixture(scope="module")
def service(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RuntimeProcess]:
    rt = start_service(azurite, fhir, Path(tmp_path_factory.mktemp("limits")), MAX_RUNNING_JOBS_PER_USER="1",
                       MAX_OPEN_JOBS_PER_USER="3")  # fmt: skip
    try:
        yield rt
    finally:
        rt.stop()


@pytest.fixture(scope="module")
def put() -> Iterator[HoldingPutServer]:
    with HoldingPutServer() as server:
        yield server


def batch(azurite: Azurite, put: HoldingPutServer, folder: str, user: str) -> dict[str, Any]:
    """A one-file batch of `user` to `put`, uploaded under `folder`."""
    upload(azurite, "limits", {f"{folder}/scan.dcm": b"x" * 5000})
    # A base URL of its own per batch: batches to one prefix are refused while one is unfinished.
    destination = {
        "kind": "http_put",
        "base_url": f"{put.base_url}/{folder}",
        "url_template": "{base}/{name}",
    }
    return {"source": {"kind": "blob", "container": "limits"}, "items": [f"{folder}/scan.dcm"],
            "destination": destination, "options": {"retry": FAST_RETRY}, "requested_by": user}  # fmt: skip


def waiting_for(client: ExportClient, job_id: str, text: str) -> dict[str, Any]:
    """The job's status once it is `queued` with a waiting reason containing `text`."""

    def said() -> dict[str, Any] | None:
        st = status(client, job_id)
        assert st["state"] == "queued", st
        return st if text in (st["waiting"] or "") else None

    return wait_until(said, timeout=30, interval=0.2, message=f"batch {job_id} waiting for {text!r}")


def under_way(put: HoldingPutServer, folder: str) -> None:
    wait_until(lambda: folder in put.arrived, timeout=60, interval=0.1, message=f"an upload to {folder}")


def test_one_users_jobs_run_one_at_a_time_in_submission_order(
    client: ExportClient, azurite: Azurite, put: HoldingPutServer
) -> None:
    user = "alice@example.com"
    folders = ["alice-1", "alice-2", "alice-3"]
    put.hold(*folders)
    jobs = [start(client, batch(azurite, put, folder, user)) for folder in folders]
    under_way(put, "alice-1")
    assert status(client, jobs[0])["state"] == "running"
    second = waiting_for(client, jobs[1], f"1 earlier job of {user}")
    assert second["waiting"] == f"waiting for 1 earlier job of {user} (MAX_RUNNING_JOBS_PER_USER=1)"
    assert second["started"] is None
    waiting_for(client, jobs[2], f"2 earlier jobs of {user}")

    # Another user is not held back by alice's line.
    other = wait(client, start(client, batch(azurite, put, "bob-1", "bob@example.com")), timeout=60)
    assert other["state"] == "succeeded" and other["waiting"] is None, other
    assert status(client, jobs[1])["state"] == "queued"

    for n, folder in enumerate(folders):
        under_way(put, folder)
        if n + 1 < len(folders):
            assert status(client, jobs[n + 1])["state"] == "queued"
        put.release(folder)
        final = wait(client, jobs[n], timeout=60)
        assert final["state"] == "succeeded" and final["waiting"] is None, final
    assert [f for f in put.arrived if f.startswith("alice")] == folders  # one upload each, in order
    ended = [status(client, job) for job in jobs]
    for earlier, later in zip(ended, ended[1:], strict=False):
        assert earlier["finished"] <= later["started"], (earlier, later)


def test_cancelling_a_waiting_job_ends_it_at_once_and_the_next_one_starts(
    client: ExportClient, azurite: Azurite, put: HoldingPutServer
) -> None:
    user = "carol@example.com"
    put.hold("carol-1", "carol-3")
    first, second, third = (start(client, batch(azurite, put, f"carol-{n}", user)) for n in (1, 2, 3))
    under_way(put, "carol-1")
    waiting_for(client, second, "1 earlier job")
    waiting_for(client, third, "2 earlier jobs")

    began = time.monotonic()
    r = client.http.delete(client.rt.url(f"api/batches/{second}"))
    assert r.status_code == 202, r.text
    cancelled = wait(client, second, timeout=30)
    assert cancelled["state"] == "cancelled" and cancelled["started"] is None, cancelled
    assert time.monotonic() - began < 15  # the cancel event ends the wait; no back-off is waited out
    assert {i["state"] for i in cancelled["items"]} == {"cancelled"}
    waiting_for(client, third, f"1 earlier job of {user}")  # carol-2 no longer ahead of it

    put.release("carol-1")
    assert wait(client, first, timeout=60)["state"] == "succeeded"
    under_way(put, "carol-3")
    put.release("carol-3")
    assert wait(client, third, timeout=60)["state"] == "succeeded"
    assert "carol-2" not in put.arrived


def test_a_fourth_unfinished_job_is_refused_until_one_ends(
    client: ExportClient, azurite: Azurite, put: HoldingPutServer
) -> None:
    user = "dave@example.com"
    put.hold("dave-1")
    jobs = [start(client, batch(azurite, put, f"dave-{n}", user)) for n in (1, 2, 3)]
    under_way(put, "dave-1")
    r = client.http.post(client.rt.url("api/batches"), json=batch(azurite, put, "dave-4", user))
    assert r.status_code == 429, r.text
    assert r.json()["error"]["code"] == "too_many_jobs" and r.headers["Retry-After"] == "60"
    assert "MAX_OPEN_JOBS_PER_USER=3" in r.json()["error"]["message"]
    other = start(client, batch(azurite, put, "erin-1", "erin@example.com"))  # others are not refused
    assert client.http.delete(client.rt.url(f"api/batches/{jobs[2]}")).status_code == 202
    assert wait(client, jobs[2], timeout=30)["state"] == "cancelled"
    jobs[2] = start(client, batch(azurite, put, "dave-4", user))  # a place is free again
    put.release("dave-1")
    for job in [*jobs, other]:
        assert wait(client, job, timeout=60)["state"] == "succeeded"
