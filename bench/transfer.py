"""Benchmark: batch throughput (Azurite -> WebDAV through the service) and peak RSS on one big item.

Ours: the runtime (`python -m selfhost` on the repo root, the real function_app.py) runs one
POST /api/batches of --files blobs of --size-mb MiB each, from a container in Azurite to a real
WebDAV server (wsgidav, `tests.support.webdav_server`, in its own process), PUT with
`create_parents: true` and the batch's defaults otherwise (verify: a HEAD after each PUT). Timed
from the POST until GET /api/batches/{id} (polled every 0.2 s) says `succeeded`.

Baseline, measured in the same run against the same Azurite and WebDAV server (another target
folder): a plain loop in this process that streams each blob (`download_blob().chunks()`) into
an httpx streaming PUT with its Content-Length, --concurrency blobs at once (threads; the batch
runs --concurrency items at once too, 4 by default as the batch's own default; 1 makes both
sides one item after another). It MKCOLs its folders first, inside its timing.

--repeat rounds, each one baseline pass and one batch, in alternating order (service first in
odd rounds); the fastest run of each side counts, because load on this shared machine comes in
bursts. The blobs are generated once (1 MiB segments of one os.urandom block, each with its own
header, so no two segments of the data set are alike) and uploaded once; every destination file
is checked for its size and a sample (first, middle, last of each run, and the big item) for its
sha256 against the source's.

Memory: before the rounds, the service moves one blob of --big-mb MiB alone (a fresh runtime,
warmed by one small batch); the RSS of the runtime process and its children is sampled every
0.1 s, and the peak minus the RSS just before the POST is reported (target < 150 MiB). The same
sampling runs during the throughput batches (--concurrency items at once).

Prints MiB/s of both sides and the ratio service/baseline (target >= 0.8), CPU seconds per
process for each run (the service spends CPU in the runtime, Azurite and the WebDAV server; the
baseline in this process, Azurite and the WebDAV server) and how many cores other processes used
meanwhile ("others"), then one JSON line with every figure. Sizes are MiB (2^20 bytes).

Usage: .venv/bin/python -m bench.transfer [--files 20] [--size-mb 50] [--big-mb 1024] [--repeat 2]
           [--concurrency 4]
Quick check: .venv/bin/python -m bench.transfer --files 2 --size-mb 5 --big-mb 50 --repeat 1
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from azure.storage.blob import BlobBlock, ContainerClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/transfer.py` as well as `-m bench.transfer`
    sys.path.insert(0, str(ROOT))

from bench.export_fhir import RssSampler, cpu_seconds, machine_busy_seconds  # noqa: E402
from selfhost.keys import load_or_create_keys  # noqa: E402
from tests.support.azurite import Azurite, start_azurite  # noqa: E402
from tests.support.export_env import service_env  # noqa: E402
from tests.support.fhir_server import FhirTestServer  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.runtime import RuntimeProcess  # noqa: E402

MIB = 1024 * 1024
SEGMENT = MIB  # generated data: one urandom block per run, each MiB with its own header
HEADER = 64
UPLOAD_BLOCK = 8 * MIB
CONTAINER = "bench-transfer"
POLL_S = 0.2
RSS_INTERVAL_S = 0.1
TERMINAL = ("succeeded", "failed", "cancelled")


# ---- data: generated, uploaded once ---------------------------------------------------------


def generated_blocks(name: str, size: int, base: bytes) -> Iterator[bytes]:
    """`size` bytes of `name` in blocks of UPLOAD_BLOCK: 1 MiB segments of `base`, each starting
    with a header naming the blob and the segment (cheap, and no two segments alike)."""
    segments = -(-size // SEGMENT)
    per_block = UPLOAD_BLOCK // SEGMENT
    for first in range(0, segments, per_block):
        parts = []
        for seg in range(first, min(segments, first + per_block)):
            header = f"{name}#{seg:010d}#".encode().ljust(HEADER, b".")[:HEADER]
            length = min(SEGMENT, size - seg * SEGMENT)
            parts.append((header + base[HEADER:SEGMENT])[:length])
        yield b"".join(parts)


def upload_generated(
    container: ContainerClient, name: str, size: int, base: bytes, pool: ThreadPoolExecutor
) -> str:
    """Stage the blob's blocks (a few in flight), commit them; the sha256 of what was sent."""
    blob = container.get_blob_client(name)
    digest = hashlib.sha256()
    in_flight: list[Future[Any]] = []
    ids = []
    for i, block in enumerate(generated_blocks(name, size, base)):
        digest.update(block)
        block_id = f"{i:08d}"
        ids.append(block_id)
        in_flight.append(pool.submit(blob.stage_block, block_id, block, length=len(block)))
        while len(in_flight) >= 4:
            in_flight.pop(0).result()
    for f in in_flight:
        f.result()
    blob.commit_block_list([BlobBlock(block_id=b) for b in ids])
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MIB):
            digest.update(chunk)
    return digest.hexdigest()


# ---- servers ----------------------------------------------------------------------------------


class DavProcess:
    """The WebDAV test server in its own process (its own GIL: neither side shares it)."""

    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.port = free_port()
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.webdav_server", "--port", str(self.port), "--root", str(root)],
            cwd=str(ROOT), env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=self._log,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        try:
            line = self.proc.stdout.readline().decode(errors="replace")
            if "WebDAV test server on" not in line:
                raise RuntimeError(f"the WebDAV server did not start: {line!r}; see {log}")
        except BaseException:
            self.stop()
            raise

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/dav"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()


@dataclass
class CpuMeter:
    """CPU seconds of each process (and the cores others used) between enter and exit."""

    pids: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)
    others: float = 0.0
    _start: dict[str, float] = field(default_factory=dict)
    _busy: float = 0.0
    _t0: float = 0.0

    def _read(self) -> dict[str, float]:
        # This process alone: its children are the servers, counted on their own.
        return {k: cpu_seconds(pid, children=k != "bench") for k, pid in self.pids.items()}

    def __enter__(self) -> CpuMeter:
        self._start, self._busy, self._t0 = self._read(), machine_busy_seconds(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        elapsed = time.perf_counter() - self._t0
        end = self._read()
        self.cpu = {k: end[k] - self._start[k] for k in end}
        busy = machine_busy_seconds() - self._busy
        self.others = max(0.0, busy - sum(self.cpu.values())) / max(elapsed, 1e-9)


@dataclass
class Run:
    side: str  # "service" or "baseline"
    round: int
    bytes: int
    seconds: float
    cpu: dict[str, float]
    others: float
    rss_before: int = 0
    rss_peak: int = 0
    first_item_s: float | None = None  # POST -> an item seen under way (service)
    items_done_s: float | None = None  # POST -> every item seen succeeded (service)
    retries: int = 0

    @property
    def mib_s(self) -> float:
        return self.bytes / MIB / self.seconds


class Service:
    """The runtime running function_app.py against Azurite, as `start_service` starts it."""

    def __init__(self, azurite: Azurite, fhir: FhirTestServer, work: Path) -> None:
        state = work / "state"
        key = load_or_create_keys(state).default_function_key
        env = service_env(azurite, fhir, work, FHIR_FRONTDOOR_KEYS=key, SELFHOST_LOG_LEVEL="WARNING")
        self.rt = RuntimeProcess(ROOT, state, env=env)
        self.http: httpx.Client | None = None

    def start(self) -> None:
        self.rt.start()
        self.http = httpx.Client(timeout=60, headers={"x-functions-key": self.rt.function_key})

    @property
    def pid(self) -> int:
        assert self.rt.process is not None
        return self.rt.process.pid

    def stop(self) -> None:
        if self.http is not None:
            self.http.close()
        self.rt.stop()

    def batch(
        self, dav: DavProcess, items: list[str], folder: str, concurrency: int, timeout: float
    ) -> tuple[float, dict[str, Any], float | None, float | None]:
        """POST the batch and poll it until it ends: (seconds, final status, first item under
        way, every item succeeded), times since the POST."""
        assert self.http is not None
        body = {
            "source": {"kind": "blob", "container": CONTAINER},
            "items": items,
            "destination": {"kind": "http_put", "base_url": dav.base_url,
                            "url_template": "{base}/{folder}/{path}", "create_parents": True},
            "options": {"concurrency": concurrency},
            "requested_by": "bench@example.com",
            "labels": {"folder": folder},
        }  # fmt: skip
        t0 = time.perf_counter()
        r = self.http.post(self.rt.url("api/batches"), json=body)
        if r.status_code != 202:
            raise RuntimeError(f"batch not accepted: {r.status_code} {r.text[:500]}")
        job_id = r.json()["id"]
        first = done = None
        tick = t0
        while True:
            tick += POLL_S
            time.sleep(max(0.0, tick - time.perf_counter()))
            r = self.http.get(self.rt.url(f"api/batches/{job_id}"))
            now = time.perf_counter() - t0
            if r.status_code != 200:
                raise RuntimeError(f"GET batch {job_id}: {r.status_code} {r.text[:500]}")
            status = r.json()
            counts = status["counts"]
            if first is None and counts.get("queued", 0) < counts["items"]:
                first = now
            if done is None and counts.get("succeeded", 0) == counts["items"]:
                done = now
            if status["state"] in TERMINAL:
                return now, status, first, done
            if self.rt.process is not None and self.rt.process.poll() is not None:
                raise RuntimeError(f"the runtime exited:\n{self.rt.log_text()[-3000:]}")
            if now > timeout:
                raise RuntimeError(
                    f"batch {job_id} still {status['state']} after {timeout:.0f} s: {status['counts']}"
                )

    def status_get_cpu(self, job_id: str, calls: int = 10) -> float:
        """Runtime CPU seconds per GET /api/batches/{id}, on the idle runtime."""
        assert self.http is not None
        before = cpu_seconds(self.pid)
        for _ in range(calls):
            self.http.get(self.rt.url(f"api/batches/{job_id}")).raise_for_status()
        return (cpu_seconds(self.pid) - before) / calls


# ---- the baseline -----------------------------------------------------------------------------


def run_baseline(
    container: ContainerClient, dav: DavProcess, items: list[str], folder: str, concurrency: int
) -> float:
    """Stream every blob into a PUT, `concurrency` at once; seconds taken (MKCOLs included)."""
    limits = httpx.Limits(max_connections=concurrency + 1, max_keepalive_connections=concurrency + 1)
    with httpx.Client(timeout=httpx.Timeout(300), limits=limits) as http:

        def copy(item: str) -> None:
            download = container.download_blob(item, max_concurrency=1)
            url = f"{dav.base_url}/{folder}/{item}"
            headers = {"Content-Length": str(download.size), "Content-Type": "application/octet-stream"}
            r = http.put(url, content=download.chunks(), headers=headers)
            if r.status_code not in (201, 204):
                raise RuntimeError(f"baseline PUT {url}: {r.status_code} {r.text[:300]}")

        t0 = time.perf_counter()
        parents = sorted({"/".join(f"{folder}/{item}".split("/")[: i + 1])
                          for item in items for i in range(item.count("/") + 1)}, key=len)  # fmt: skip
        for collection in parents:
            r = http.request("MKCOL", f"{dav.base_url}/{collection}/")
            if r.status_code not in (201, 405):
                raise RuntimeError(f"baseline MKCOL {collection}: {r.status_code}")
        with ThreadPoolExecutor(concurrency, thread_name_prefix="baseline") as pool:
            for f in [pool.submit(copy, item) for item in items]:
                f.result()
        return time.perf_counter() - t0


# ---- checks -----------------------------------------------------------------------------------


def verify(dav_root: Path, folder: str, items: list[str], sizes: dict[str, int], shas: dict[str, str]) -> int:
    """Every file has its size; first, middle and last are byte-identical (sha256). Files checked."""
    for item in items:
        path = dav_root / folder / item
        if not path.is_file() or path.stat().st_size != sizes[item]:
            got = path.stat().st_size if path.is_file() else "no file"
            raise RuntimeError(f"{folder}/{item}: {got} bytes, expected {sizes[item]}")
    sample = sorted({items[0], items[len(items) // 2], items[-1]})
    for item in sample:
        if file_sha256(dav_root / folder / item) != shas[item]:
            raise RuntimeError(f"{folder}/{item}: sha256 differs from the source's")
    shutil.rmtree(dav_root / folder, ignore_errors=True)  # keep the disk use to one run's files
    return len(sample)


def check_status(status: dict[str, Any], items: list[str], total: int) -> int:
    """The batch succeeded with every byte; the number of retried attempts."""
    if status["state"] != "succeeded" or status["bytes"]["done"] != total:
        raise RuntimeError(
            f"batch ended {status['state']} with {status['bytes']} / {total} bytes: {status['last_error']}; "
            f"items {[(i['item'], i['state'], i['last_error']) for i in status['items'] if i['state'] != 'succeeded']}"
        )
    return sum(int(i["attempts"]) - 1 for i in status["items"])


# ---- main -------------------------------------------------------------------------------------


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=20, help="blobs in the throughput batch")
    parser.add_argument("--size-mb", type=int, default=50, help="size of each of them, MiB")
    parser.add_argument(
        "--big-mb", type=int, default=1024, help="size of the one blob of the memory run, MiB"
    )
    parser.add_argument("--repeat", type=int, default=2, help="rounds of baseline + batch (best counts)")
    parser.add_argument(
        "--concurrency", type=int, default=4, help="items at once, both sides (batch default 4)"
    )
    args = parser.parse_args()
    if min(args.files, args.size_mb, args.big_mb, args.repeat, args.concurrency) < 1:
        parser.error("every option must be at least 1")
    signal.signal(signal.SIGTERM, _interrupt)  # unwinds like Ctrl-C: every `finally` runs
    signal.signal(signal.SIGINT, _interrupt)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True
    )
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="bench-transfer-"))
    try:
        with contextlib.ExitStack() as stack:
            azurite = start_azurite(tmp / "azurite")
            stack.callback(azurite.stop)
            fhir = stack.enter_context(FhirTestServer({"Patient": 1}))  # the service's env needs one
            dav_root = tmp / "dav"
            dav = DavProcess(dav_root, tmp / "webdav.log")
            stack.callback(dav.stop)
            result = bench(args, tmp, azurite, fhir, dav, dav_root, stack)
    except KeyboardInterrupt:
        print("interrupted; every server stopped", file=sys.stderr)
        sys.exit(130)
    except BaseException:
        log = tmp / "state-runtime.log"
        if log.exists():
            print(f"runtime log (tail):\n{log.read_text(errors='replace')[-3000:]}", file=sys.stderr)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result))


def bench(
    args: argparse.Namespace,
    tmp: Path,
    azurite: Azurite,
    fhir: FhirTestServer,
    dav: DavProcess,
    dav_root: Path,
    stack: contextlib.ExitStack,
) -> dict[str, Any]:
    items = [f"data/blob-{i:03d}.bin" for i in range(args.files)]
    big, warm = "big/blob-big.bin", "warm/blob-warm.bin"
    sizes = {**dict.fromkeys(items, args.size_mb * MIB), big: args.big_mb * MIB, warm: MIB}
    container = ContainerClient.from_connection_string(azurite.connection_string, CONTAINER)
    stack.callback(container.close)
    container.create_container()
    t0 = time.perf_counter()
    base = os.urandom(SEGMENT)
    with ThreadPoolExecutor(4, thread_name_prefix="upload") as pool:
        shas = {name: upload_generated(container, name, size, base, pool) for name, size in sizes.items()}
    total_mib = sum(sizes.values()) / MIB
    print(
        f"uploaded {len(sizes)} blobs, {total_mib:.0f} MiB, in {time.perf_counter() - t0:.1f} s", flush=True
    )

    service = Service(azurite, fhir, tmp)
    stack.callback(service.stop)
    service.start()
    assert azurite.process is not None
    pids = {
        "runtime": service.pid,
        "azurite": azurite.process.pid,
        "webdav": dav.proc.pid,
        "bench": os.getpid(),
    }
    checked = 0

    # Warm-up, both sides: imports, clients, connections, the first MKCOLs.
    _, status, _, _ = service.batch(dav, [warm], "warm-svc", args.concurrency, timeout=120)
    check_status(status, [warm], MIB)
    run_baseline(container, dav, [warm], "warm-base", args.concurrency)
    checked += verify(dav_root, "warm-svc", [warm], sizes, shas) + verify(
        dav_root, "warm-base", [warm], sizes, shas
    )

    # Memory: one big item alone, in the warmed runtime.
    sampler = RssSampler(service.pid, RSS_INTERVAL_S)
    time.sleep(1.0)  # let the warm-up's garbage settle before the reading
    before = sampler.rss()
    with CpuMeter(pids) as meter, sampler:
        seconds, status, first, done = service.batch(dav, [big], "mem", 1, timeout=120 + args.big_mb / 2)
    retries = check_status(status, [big], sizes[big])
    checked += verify(dav_root, "mem", [big], sizes, shas)
    memory = Run(
        "service", 0, sizes[big], seconds, meter.cpu, meter.others, before, sampler.peak, first, done, retries
    )
    print(f"memory run: {args.big_mb} MiB in {seconds:.1f} s ({memory.mib_s:.0f} MiB/s), runtime RSS "
          f"{before / MIB:.0f} -> peak {sampler.peak / MIB:.0f} MiB (+{(sampler.peak - before) / MIB:.0f}), "
          f"{len(sampler.samples)} samples", flush=True)  # fmt: skip

    runs: list[Run] = []
    batch_bytes = args.files * args.size_mb * MIB
    timeout = 120 + batch_bytes / MIB / 2
    last_job = status["id"]
    for round_no in range(1, args.repeat + 1):
        sides = ("service", "baseline") if round_no % 2 else ("baseline", "service")
        for side in sides:
            folder = f"{'svc' if side == 'service' else 'base'}-r{round_no}"
            if side == "service":
                sampler = RssSampler(service.pid, RSS_INTERVAL_S)
                before = sampler.rss()
                with CpuMeter(pids) as meter, sampler:
                    seconds, status, first, done = service.batch(
                        dav, items, folder, args.concurrency, timeout
                    )
                retries = check_status(status, items, batch_bytes)
                last_job = status["id"]
                run = Run(side, round_no, batch_bytes, seconds, meter.cpu, meter.others, before, sampler.peak,
                          first, done, retries)  # fmt: skip
            else:
                with CpuMeter(pids) as meter:
                    seconds = run_baseline(container, dav, items, folder, args.concurrency)
                run = Run(side, round_no, batch_bytes, seconds, meter.cpu, meter.others)
            checked += verify(dav_root, folder, items, sizes, shas)
            runs.append(run)
            print(f"round {round_no} {side}: {seconds:.1f} s, {run.mib_s:.0f} MiB/s", flush=True)
    get_cpu = service.status_get_cpu(last_job)
    return report(args, runs, memory, get_cpu, checked)


def report(
    args: argparse.Namespace, runs: list[Run], memory: Run, get_cpu: float, checked: int
) -> dict[str, Any]:
    print()
    print(f"{'round':<6}{'side':<10}{'seconds':>8}{'MiB/s':>7}{'CPU s: runtime':>15}{'bench':>7}{'azurite':>8}"
          f"{'webdav':>7}{'others':>7}{'RSS +MiB':>9}  first item / all items done (s)")  # fmt: skip
    for r in [memory, *runs]:
        label = "mem" if r.round == 0 else str(r.round)
        rss = f"{(r.rss_peak - r.rss_before) / MIB:>9.0f}" if r.side == "service" else f"{'-':>9}"
        times = (
            f"  {r.first_item_s:.1f} / {r.items_done_s:.1f}"
            if r.first_item_s is not None and r.items_done_s
            else ""
        )
        print(f"{label:<6}{r.side:<10}{r.seconds:>8.1f}{r.mib_s:>7.0f}{r.cpu['runtime']:>15.1f}{r.cpu['bench']:>7.1f}"
              f"{r.cpu['azurite']:>8.1f}{r.cpu['webdav']:>7.1f}{r.others:>7.2f}{rss}{times}")  # fmt: skip
    print(
        "(CPU s: bench = this process: the baseline loop, or the status polls; others = cores busy outside)"
    )
    ours = [r for r in runs if r.side == "service"]
    base = [r for r in runs if r.side == "baseline"]
    best_ours, best_base = min(ours, key=lambda r: r.seconds), min(base, key=lambda r: r.seconds)
    ratio = best_ours.mib_s / best_base.mib_s
    delta = (memory.rss_peak - memory.rss_before) / MIB
    gib = memory.bytes / (1024 * MIB)
    print()
    print(f"throughput, {args.files} x {args.size_mb} MiB, {args.concurrency} at once (best of {args.repeat}): "
          f"service {best_ours.mib_s:.1f} MiB/s, baseline {best_base.mib_s:.1f} MiB/s, ratio {ratio:.2f} (target >= 0.8)")  # fmt: skip
    print(f"memory, one {args.big_mb} MiB item: runtime peak RSS {memory.rss_peak / MIB:.0f} MiB, "
          f"{delta:.0f} MiB over the {memory.rss_before / MIB:.0f} MiB before (target < 150 MiB); "
          f"{memory.mib_s:.1f} MiB/s alone, runtime CPU {memory.cpu['runtime'] / gib:.1f} s per GiB")  # fmt: skip
    cpu_ours = min(r.cpu["runtime"] for r in ours) / (best_ours.bytes / (1024 * MIB))
    cpu_base = min(r.cpu["bench"] for r in base) / (best_base.bytes / (1024 * MIB))
    print(f"CPU s per GiB moved: runtime {cpu_ours:.1f}, baseline loop {cpu_base:.1f}; "
          f"one GET /api/batches/{{id}} costs the runtime {1000 * get_cpu:.0f} ms CPU")  # fmt: skip
    load = os.getloadavg()
    print(f"{checked} destination files checked byte-identical (sha256). Load average now "
          f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True)  # fmt: skip
    return {
        "files": args.files, "size_mib": args.size_mb, "big_mib": args.big_mb, "repeat": args.repeat,
        "concurrency": args.concurrency, "baseline": f"{args.concurrency} blobs at once (threads)",
        "service_mib_s": round(best_ours.mib_s, 2), "baseline_mib_s": round(best_base.mib_s, 2),
        "ratio_service_over_baseline": round(ratio, 3),
        "service_s": [round(r.seconds, 2) for r in ours], "baseline_s": [round(r.seconds, 2) for r in base],
        "service_first_item_s": [r.first_item_s for r in ours],
        "service_retries": sum(r.retries for r in ours) + memory.retries,
        "throughput_rss_delta_mib": round(max((r.rss_peak - r.rss_before) / MIB for r in ours), 1),
        "memory_s": round(memory.seconds, 2), "memory_mib_s": round(memory.mib_s, 2),
        "rss_before_mib": round(memory.rss_before / MIB, 1), "rss_peak_mib": round(memory.rss_peak / MIB, 1),
        "rss_delta_mib": round(delta, 1),
        "cpu_s_per_gib": {"runtime": round(cpu_ours, 2), "baseline": round(cpu_base, 2)},
        "status_get_cpu_ms": round(1000 * get_cpu, 1), "verified_files": checked,
        "targets_met": {"ratio": ratio >= 0.8, "rss": delta < 150},
    }  # fmt: skip


if __name__ == "__main__":
    main()
