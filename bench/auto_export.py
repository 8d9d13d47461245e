"""Benchmark: auto-export latency, a new blob (or a completion message) to its first byte at the destination.

Ours: the runtime (`python -m selfhost` on the repo root, the real function_app.py, started as
`tests.support.export_env.start_service` starts it) against Azurite, with AUTO_EXPORT_CONFIG
naming two apps that PUT to a real WebDAV server (wsgidav, `tests.support.webdav_server`, in this
process) with `create_parents: true`:

- `live`, `timing: as_available`: blob events. --events blobs `live/{session}/blob-NNN.bin` are
  uploaded to the `generated-data` container one at a time, --gap s apart (not waiting for the
  previous one to arrive; see "pauses" below); by default all of a round's blobs go to one session (an app writing a
  session's data), `--blob-sessions each` gives every blob a session of its own (every event then
  opens a job). The self-hosted blob trigger finds them by listing the container every 1 s.
- `ended`, `timing: session_end`: completion events. One small blob per session is uploaded
  first (the bench checks that none is exported before its message), then for each session the
  message `{"session_id", "study_id", "app", "prefix"}` (base64 JSON) is sent to the
  `session-completed` queue, --gap s apart. The queue trigger polls with the host's backoff,
  100 ms growing to maxPollingInterval (2 s, host.json sets none) while the queue is empty: the
  first message after a quiet spell may wait up to 2 s, the next ones find the listener awake
  (a larger --gap, e.g. 3, measures messages that come alone).

Pauses: each one is drawn uniformly from 0.5-1.5 x --gap, the same draws for both sides of a
round and kind; so events fall at every point of the 1 s polling cycles, never in step with them
(a gap of exactly 1 s or 3 s would put every event at the same point of the cycle).

Latency of one event: from the moment the upload (or the queue send) returned until the WebDAV
server saw the request line and headers of the first PUT of that file (time.monotonic(), taken
when the request reaches the server's WSGI app; the server runs in this process, so both ends
read the same clock). Every file is then checked byte-identical to its source.

Baseline, measured in the same run against the same Azurite and WebDAV server: a plain script on
a thread of this process, with its own container (`bench-baseline`) and queue
(`bench-baseline-completed`) and the same layouts:
- blobs: `list_blobs(name_starts_with=<the round's prefix>)`, then download each new blob (name
  or ETag not seen) and PUT it with httpx (MKCOLing the parents it has not made), then sleep
  1 s: the self-hosted blob trigger's scan interval;
- completions: `receive_messages` (up to 32), for each one list its prefix, download and PUT each
  blob, delete the message, then sleep 1 s.

--rounds rounds (the events split between them), each one service phase and one baseline phase
per event kind, in alternating order (service first in odd rounds); nothing of the other side is
in flight during a phase. A warm-up phase of 2 events per kind and side comes first and is not
counted. Percentiles are nearest-rank over every counted event of a kind and side.

Prints p50, p95 and max per event kind for both sides, the ratios service/baseline, whether the
service's p95 is within the target (<= 2 s), CPU ms per event of each process, and one JSON line
with every figure. Never asserts on time.

Usage: .venv/bin/python -m bench.auto_export [--events 50] [--rounds 2] [--gap 0.4] [--size-kb 16]
           [--blob-sessions shared|each]
Quick check: .venv/bin/python -m bench.auto_export --quick     (6 events per kind, 1 round)
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import ContainerClient
from azure.storage.queue import QueueClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/auto_export.py` as well as `-m bench.auto_export`
    sys.path.insert(0, str(ROOT))

from bench.transfer import CpuMeter  # noqa: E402
from tests.support.azurite import Azurite, start_azurite  # noqa: E402
from tests.support.export_env import start_service  # noqa: E402
from tests.support.fhir_server import FhirTestServer  # noqa: E402
from tests.support.runtime import RuntimeProcess  # noqa: E402
from tests.support.webdav_server import DavRequest, WebDavTestServer  # noqa: E402

GENERATED = "generated-data"  # the service's GENERATED_DATA_CONTAINER (service_env)
COMPLETED_QUEUE = "session-completed"
BASE_CONTAINER = "bench-baseline"
BASE_QUEUE = "bench-baseline-completed"
LIVE, ENDED = "live", "ended"  # the two apps: as_available and session_end
SERVICE_FOLDER, BASE_FOLDER = "svc", "base"  # where each side's files land on the WebDAV server
POLL_S = 1.0  # the baseline's sleep between polls = the self-hosted blob trigger's scan interval
SETTLE_S = 3.0  # after the completion phase's blobs: the blob trigger has seen them all
TARGET_P95_S = 2.0
WARMUP_EVENTS = 2
KINDS = ("blob", "completion")
SIDES = ("service", "baseline")


# ---- the destination, with the arrival time of each file's first PUT --------------------------


class StampedDav(WebDavTestServer):
    """The WebDAV test server, remembering when the first PUT of each path reached it."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self._first_put: dict[str, float] = {}
        self._stamp_lock = threading.Lock()

    def _record(self, request: DavRequest) -> None:
        # Called by the server's recording middleware as a request reaches the WSGI app: the
        # request line and headers are in, the body not read yet.
        now = time.monotonic()
        if request.method == "PUT":
            with self._stamp_lock:
                self._first_put.setdefault(request.path, now)
        super()._record(request)

    def first_put(self, path: str) -> float | None:
        with self._stamp_lock:
            return self._first_put.get(path)


# ---- the baseline: a plain polling script on a thread -----------------------------------------


class PollingScript(threading.Thread):
    """Poll, copy what is new with httpx PUTs, sleep POLL_S; until stopped. Errors surface in stop()."""

    def __init__(self, azurite: Azurite, dav_base: str) -> None:
        super().__init__(name=f"baseline-{type(self).__name__}", daemon=True)
        self.container = ContainerClient.from_connection_string(azurite.connection_string, BASE_CONTAINER)
        self.http = httpx.Client(timeout=30)
        self.dav_base = dav_base
        self.error: BaseException | None = None
        self._stop_event = threading.Event()
        self._collections: set[str] = set()

    def poll(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        try:
            while not self._stop_event.is_set():
                self.poll()
                self._stop_event.wait(POLL_S)
        except BaseException as exc:  # noqa: BLE001 - reported by stop() and check()
            self.error = exc

    def copy(self, name: str) -> None:
        data = self.container.download_blob(name).readall()
        target = f"{BASE_FOLDER}/{name}"
        parts = target.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            collection = "/".join(parts[:i])
            if collection not in self._collections:
                r = self.http.request("MKCOL", f"{self.dav_base}/{collection}/")
                if r.status_code not in (201, 405):
                    raise RuntimeError(f"baseline MKCOL {collection}: {r.status_code}")
                self._collections.add(collection)
        r = self.http.put(f"{self.dav_base}/{target}", content=data,
                          headers={"Content-Type": "application/octet-stream"})  # fmt: skip
        if r.status_code not in (201, 204):
            raise RuntimeError(f"baseline PUT {target}: {r.status_code} {r.text[:300]}")

    def check(self) -> None:
        if self.error is not None:
            raise RuntimeError(f"the baseline script failed: {self.error!r}") from self.error

    def stop(self) -> None:
        self._stop_event.set()
        if self.is_alive():
            self.join(30)
        self.http.close()
        self.container.close()
        self.check()


class BlobPoller(PollingScript):
    """List the prefix; download and PUT each blob whose name or ETag is new."""

    def __init__(self, azurite: Azurite, dav_base: str, prefix: str) -> None:
        super().__init__(azurite, dav_base)
        self.prefix = prefix
        self.known: dict[str, str] = {}

    def poll(self) -> None:
        for blob in self.container.list_blobs(name_starts_with=self.prefix):
            if self.known.get(blob.name) != blob.etag:
                self.copy(blob.name)
                self.known[blob.name] = blob.etag


class QueuePoller(PollingScript):
    """Take the waiting messages; for each, list its prefix and PUT every blob; delete it."""

    def __init__(self, azurite: Azurite, dav_base: str) -> None:
        super().__init__(azurite, dav_base)
        self.queue = QueueClient.from_connection_string(azurite.connection_string, BASE_QUEUE)

    def poll(self) -> None:
        for message in self.queue.receive_messages(
            messages_per_page=32, max_messages=32, visibility_timeout=60
        ):
            body = json.loads(base64.b64decode(message.content))
            for blob in self.container.list_blobs(name_starts_with=body["prefix"]):
                self.copy(blob.name)
            self.queue.delete_message(message)

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.queue.close()


# ---- events -----------------------------------------------------------------------------------


@dataclass
class Event:
    relative: str  # the file below the WebDAV share
    data: bytes
    sent: float = 0.0  # time.monotonic() when the upload / the queue send returned

    @property
    def url_path(self) -> str:
        return "/dav/" + self.relative


@dataclass
class Phase:
    kind: str
    side: str
    round: int
    latencies: list[float]
    seconds: float
    cpu: dict[str, float] = field(default_factory=dict)
    others: float = 0.0


def auto_export_config(dav: WebDavTestServer) -> dict[str, Any]:
    put = {"kind": "http_put", "base_url": dav.base_url, "create_parents": True,
           "url_template": "{base}/" + SERVICE_FOLDER + "/{app}/{session}/{path}"}  # fmt: skip
    return {"apps": {LIVE: {"timing": "as_available", "destination": put},
                     ENDED: {"timing": "session_end", "destination": put}}}  # fmt: skip


def completion_message(session: str) -> str:
    text = json.dumps(
        {"session_id": session, "study_id": "bench", "app": ENDED, "prefix": f"{ENDED}/{session}/"}
    )
    return base64.b64encode(text.encode()).decode()  # the queue trigger's messageEncoding: base64


class Bench:
    def __init__(
        self, args: argparse.Namespace, azurite: Azurite, dav: StampedDav, rt: RuntimeProcess
    ) -> None:
        self.args = args
        self.azurite = azurite
        self.dav = dav
        self.rt = rt
        conn = azurite.connection_string
        self.containers = {"service": ContainerClient.from_connection_string(conn, GENERATED),
                           "baseline": ContainerClient.from_connection_string(conn, BASE_CONTAINER)}  # fmt: skip
        self.queues = {"service": QueueClient.from_connection_string(conn, COMPLETED_QUEUE),
                       "baseline": QueueClient.from_connection_string(conn, BASE_QUEUE)}  # fmt: skip
        assert rt.process is not None and azurite.process is not None
        self.pids = {"runtime": rt.process.pid, "azurite": azurite.process.pid, "bench": os.getpid()}

    def close(self) -> None:
        for container in self.containers.values():
            container.close()
        for queue in self.queues.values():
            queue.close()

    def alive(self) -> None:
        if self.rt.process is not None and self.rt.process.poll() is not None:
            raise RuntimeError(f"the runtime exited:\n{self.rt.log_text()[-3000:]}")

    def folder(self, side: str) -> str:
        return SERVICE_FOLDER if side == "service" else BASE_FOLDER

    # -- one phase: the events of one kind on one side -------------------------------------------

    def pauses(self, kind: str, round_no: int, n: int) -> list[float]:
        rng = random.Random(f"{kind}-{round_no}")  # both sides: the same pauses
        return [self.args.gap * rng.uniform(0.5, 1.5) for _ in range(n)]

    def phase(self, kind: str, side: str, round_no: int, n: int) -> Phase:
        tag = f"r{round_no}-{kind[0]}-{side[0]}"  # session ids: unique per phase
        script: PollingScript | None = None
        if side == "baseline":
            prefix = f"{LIVE if kind == 'blob' else ENDED}/{tag}-"
            script = BlobPoller(self.azurite, self.dav.base_url, prefix) if kind == "blob" else \
                QueuePoller(self.azurite, self.dav.base_url)  # fmt: skip
            script.start()
        checks: list[Callable[[], None]] = [self.alive] + ([script.check] if script else [])
        t0 = time.perf_counter()
        try:
            with CpuMeter(self.pids) as meter:
                if kind == "blob":
                    events = self.blob_events(side, tag, self.pauses(kind, round_no, n))
                else:
                    events = self.completion_events(side, tag, self.pauses(kind, round_no, n), checks)
                latencies = self.collect(events, checks)
            seconds = time.perf_counter() - t0
            self.verify(events, checks)
        finally:
            if script is not None:
                script.stop()
        return Phase(kind, side, round_no, latencies, seconds, meter.cpu, meter.others)

    def blob_events(self, side: str, tag: str, pauses: list[float]) -> list[Event]:
        container, events = self.containers[side], []
        for i, pause in enumerate(pauses):
            session = f"{tag}-s{i:03d}" if self.args.blob_sessions == "each" else f"{tag}-s000"
            name = f"{LIVE}/{session}/blob-{i:03d}.bin"
            event = Event(f"{self.folder(side)}/{name}", os.urandom(self.args.size_kb * 1024))
            container.upload_blob(name, event.data, overwrite=True)
            event.sent = time.monotonic()
            events.append(event)
            time.sleep(pause)
        return events

    def completion_events(
        self, side: str, tag: str, pauses: list[float], checks: list[Callable[[], None]]
    ) -> list[Event]:
        container, queue = self.containers[side], self.queues[side]
        sessions = [f"{tag}-s{i:03d}" for i in range(len(pauses))]
        events = []
        for session in sessions:
            name = f"{ENDED}/{session}/result.bin"
            event = Event(f"{self.folder(side)}/{name}", os.urandom(self.args.size_kb * 1024))
            container.upload_blob(name, event.data, overwrite=True)
            events.append(event)
        time.sleep(SETTLE_S)  # not measured: the blob trigger saw them (and exported none)
        for check in checks:
            check()
        early = [e.relative for e in events if self.dav.first_put(e.url_path) is not None]
        if early:
            raise RuntimeError(
                f"{len(early)} session_end files exported before their message, e.g. {early[0]}"
            )
        for session, event, pause in zip(sessions, events, pauses, strict=True):
            queue.send_message(completion_message(session))
            event.sent = time.monotonic()
            time.sleep(pause)
        return events

    def collect(self, events: list[Event], checks: list[Callable[[], None]]) -> list[float]:
        """Wait for every event's first PUT; the latencies, in event order."""
        deadline = time.monotonic() + self.args.timeout
        while True:
            missing = [e for e in events if self.dav.first_put(e.url_path) is None]
            if not missing:
                break
            for check in checks:
                check()
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(missing)} of {len(events)} files never arrived within "
                                   f"{self.args.timeout:.0f} s, e.g. {missing[0].relative}")  # fmt: skip
            time.sleep(0.02)
        return [(self.dav.first_put(e.url_path) or 0.0) - e.sent for e in events]

    def verify(self, events: list[Event], checks: list[Callable[[], None]]) -> None:
        """Every file complete and byte-identical (its PUT may still be running: wait a little)."""
        deadline = time.monotonic() + 30
        for event in events:
            path = self.dav.path(event.relative)
            while not (path.is_file() and path.read_bytes() == event.data):
                for check in checks:
                    check()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{event.relative}: not the source's bytes at the destination")
                time.sleep(0.05)

    def sessions_complete(self, round_tags: list[str], n_by_round: list[int]) -> tuple[int, int]:
        """How many of the service's completion sessions say `complete` (GET /api/sessions/{id});
        the last ones may still be finishing: asked again for up to 30 s until all do."""
        ids = [f"{tag}-s{i:03d}" for tag, n in zip(round_tags, n_by_round, strict=True) for i in range(n)]
        complete: set[str] = set()
        deadline = time.monotonic() + 30
        with httpx.Client(timeout=30, headers={"x-functions-key": self.rt.function_key}) as http:
            while True:
                for session in [s for s in ids if s not in complete]:
                    r = http.get(self.rt.url(f"api/sessions/{session}"))
                    if r.status_code == 200 and r.json().get("state") == "complete":
                        complete.add(session)
                if len(complete) == len(ids) or time.monotonic() > deadline:
                    return len(complete), len(ids)
                time.sleep(1)


# ---- figures ----------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def report(args: argparse.Namespace, phases: list[Phase], complete: tuple[int, int]) -> dict[str, Any]:
    figures: dict[str, dict[str, dict[str, Any]]] = {}
    print()
    print(f"{'event':<12}{'side':<10}{'n':>4}{'p50 s':>8}{'p95 s':>8}{'max s':>8}{'min s':>8}"
          f"   CPU ms/event: {'runtime':>7}{'azurite':>8}{'bench':>7}{'others':>8}")  # fmt: skip
    for kind in KINDS:
        figures[kind] = {}
        for side in SIDES:
            mine = [p for p in phases if p.kind == kind and p.side == side]
            lat = [x for p in mine for x in p.latencies]
            cpu = {k: sum(p.cpu[k] for p in mine) / len(lat) * 1000 for k in ("runtime", "azurite", "bench")}
            busy = sum(p.seconds for p in mine)
            others = sum(p.others * p.seconds for p in mine) / busy if busy else 0.0
            f = {"n": len(lat), "p50_s": percentile(lat, 50), "p95_s": percentile(lat, 95), "max_s": max(lat),
                 "min_s": min(lat), "cpu_ms_per_event": {k: round(v, 1) for k, v in cpu.items()},
                 "others_cores": round(others, 2)}  # fmt: skip
            figures[kind][side] = f
            print(f"{kind:<12}{side:<10}{len(lat):>4}{f['p50_s']:>8.2f}{f['p95_s']:>8.2f}{f['max_s']:>8.2f}"
                  f"{f['min_s']:>8.2f}   {'':>14}{cpu['runtime']:>7.0f}{cpu['azurite']:>8.0f}{cpu['bench']:>7.0f}"
                  f"{others:>8.2f}")  # fmt: skip
    print("(latency: upload / queue send returned -> first PUT of the file reached the WebDAV server; "
          "bench = this process: uploads, the WebDAV server, the baseline script; others = cores busy outside)")  # fmt: skip
    print()
    ratios: dict[str, dict[str, float]] = {}
    met: dict[str, bool] = {}
    for kind in KINDS:
        s, b = figures[kind]["service"], figures[kind]["baseline"]
        ratios[kind] = {q: s[q] / b[q] for q in ("p50_s", "p95_s", "max_s")}
        print(f"{kind}: ratio service/baseline p50 {ratios[kind]['p50_s']:.2f}, p95 {ratios[kind]['p95_s']:.2f}, "
              f"max {ratios[kind]['max_s']:.2f}")  # fmt: skip
    for kind in KINDS:
        p95 = figures[kind]["service"]["p95_s"]
        met[kind] = p95 <= TARGET_P95_S
        print(f"target p95 <= {TARGET_P95_S:.0f} s, {kind} events: service p95 {p95:.2f} s -> "
              f"{'met' if met[kind] else 'NOT met'}")  # fmt: skip
    print(f"completion sessions the service reports complete: {complete[0]} of {complete[1]}; "
          f"every file checked byte-identical at the destination")  # fmt: skip
    load = os.getloadavg()
    print(f"load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)
    return {
        "events": args.events, "rounds": args.rounds, "gap_s": args.gap, "size_kib": args.size_kb,
        "blob_sessions": args.blob_sessions, "baseline_poll_s": POLL_S,
        "figures": {k: {s: {q: round(v, 3) if isinstance(v, float) else v for q, v in f.items()}
                        for s, f in d.items()} for k, d in figures.items()},
        "ratio_service_over_baseline": {k: {q: round(v, 3) for q, v in r.items()} for k, r in ratios.items()},
        "latencies_s": {f"{p.kind}/{p.side}/r{p.round}": [round(x, 3) for x in p.latencies] for p in phases},
        "sessions_complete": list(complete), "target_p95_met": met,
    }  # fmt: skip


# ---- main -------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def servers(tmp: Path) -> Iterator[tuple[Azurite, StampedDav, RuntimeProcess]]:
    with contextlib.ExitStack() as stack:
        azurite = start_azurite(tmp / "azurite")
        stack.callback(azurite.stop)
        fhir = stack.enter_context(FhirTestServer({"Patient": 1}))  # the service wants a default source
        dav = StampedDav(tmp / "dav")
        dav.start()
        stack.callback(dav.stop)
        conn = azurite.connection_string
        for name in (GENERATED, BASE_CONTAINER):
            with (
                ContainerClient.from_connection_string(conn, name) as c,
                contextlib.suppress(ResourceExistsError),
            ):
                c.create_container()
        for name in (COMPLETED_QUEUE, BASE_QUEUE):
            with (
                QueueClient.from_connection_string(conn, name) as q,
                contextlib.suppress(ResourceExistsError),
            ):
                q.create_queue()
        rt = start_service(azurite, fhir, tmp, AUTO_EXPORT_CONFIG=json.dumps(auto_export_config(dav)),
                           SELFHOST_LOG_LEVEL="WARNING")  # fmt: skip
        stack.callback(rt.stop)
        yield azurite, dav, rt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50, help="counted events per kind and side")
    parser.add_argument("--rounds", type=int, default=2, help="the events split into this many rounds")
    parser.add_argument("--gap", type=float, default=0.4, help="mean seconds between two events")
    parser.add_argument("--size-kb", type=int, default=16, help="size of each blob, KiB")
    parser.add_argument("--blob-sessions", choices=("shared", "each"), default="shared",
                        help="blob events: one session per round, or one per blob")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=120, help="seconds to wait for a phase's files")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 6 events per kind, 1 round")
    args = parser.parse_args()
    if args.quick:
        args.events, args.rounds = 6, 1
    if min(args.events, args.rounds, args.size_kb) < 1 or args.rounds > args.events or args.gap < 0:
        parser.error(
            "--events, --rounds, --size-kb must be at least 1, --rounds at most --events, --gap >= 0"
        )
    signal.signal(signal.SIGTERM, _interrupt)  # unwinds like Ctrl-C: every `finally` runs
    signal.signal(signal.SIGINT, _interrupt)
    load = os.getloadavg()
    print(f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; "
          f"{args.events} events per kind and side in {args.rounds} round(s), {args.gap} s apart on average, "
          f"{args.size_kb} KiB blobs, blob sessions: {args.blob_sessions}", flush=True)  # fmt: skip
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-auto-export-"))
    rt: RuntimeProcess | None = None
    try:
        with servers(tmp) as (azurite, dav, rt):
            bench = Bench(args, azurite, dav, rt)
            try:
                for kind in KINDS:  # warm-up: imports, connections, the first orchestrations
                    for side in SIDES:
                        bench.phase(kind, side, 0, WARMUP_EVENTS)
                print(f"warm-up done ({time.perf_counter() - started:.0f} s since start)", flush=True)
                phases: list[Phase] = []
                counts = split(args.events, args.rounds)
                for round_no, n in enumerate(counts, start=1):
                    sides = SIDES if round_no % 2 else SIDES[::-1]
                    for kind in KINDS:
                        for side in sides:
                            p = bench.phase(kind, side, round_no, n)
                            phases.append(p)
                            print(f"round {round_no} {kind:<10} {side:<8}: {n} events, p50 "
                                  f"{percentile(p.latencies, 50):.2f} s, p95 {percentile(p.latencies, 95):.2f} s, "
                                  f"max {max(p.latencies):.2f} s ({p.seconds:.0f} s)", flush=True)  # fmt: skip
                tags = [f"r{r}-c-s" for r in range(1, len(counts) + 1)]
                complete = bench.sessions_complete(tags, counts)
            finally:
                bench.close()
            result = report(args, phases, complete)
    except KeyboardInterrupt:
        print("interrupted; every server stopped", file=sys.stderr)
        sys.exit(130)
    except BaseException:
        if rt is not None:
            print(f"runtime log (tail):\n{rt.log_text()[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
