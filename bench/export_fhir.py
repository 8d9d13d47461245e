"""Benchmark: FHIR bulk export throughput and peak memory of the whole service vs a plain paging loop.

Ours: the runtime (`python -m selfhost` on the repo root, the real function_app.py) exports every
type from the FHIR test server (~1 KB generated resources, split over Patient, Observation,
Encounter and Condition) to a blob container in Azurite: one POST /api/exports, timed until the
job is `succeeded` (the job's orchestration is polled every 0.1 s on the cheap durable status
endpoint, then GET /api/exports/{id} confirms the state and the resource count). The runtime's
RSS (with any children) is sampled every ~100 ms. One export per --checkpoints size, each in a
fresh runtime and a fresh Azurite, to show whether peak RSS grows with export size.

Baseline, measured in the same run on the same machine against the same FHIR test server: one
plain httpx loop that pages every type in turn (same `_count`, following `next` links), parses
each Bundle and writes its resources as NDJSON to a local file.

--rounds times (default 3): one baseline pass, then one export per size. The fastest run of each
side counts, so a burst of load from other users of the machine hurts neither side alone.

Prints resources/s of both and the ratio ours/baseline (target >= 0.8), the peak RSS at each size
and the ratio largest/smallest (target ~1.0), and where the CPU went: seconds per process and
how many cores other processes on the machine used meanwhile ("others"). The export spreads its
work over three processes (runtime, Azurite, FHIR server) and needs more CPU in total than the
loop, so its rate depends on free cores far more than the loop's does: read the ratio together
with "others". The FHIR test server runs in its own process so that no side shares its GIL.

Usage: .venv/bin/python -m bench.export_fhir [--resources 200000] [--checkpoints 50000,200000]
           [--page-size 1000] [--resource-bytes 1024] [--types Patient:2,Observation:4,...] [--rounds 3]
Profiling: BENCH_EXPORT_PROFILE=DIR writes DIR/runtime-r<round>-<n>.prof, a cProfile of every thread of
the runtime in per-thread CPU time (`python -m pstats`); it slows the runtime, ignore its rates.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `python bench/export_fhir.py` as well as `-m bench.export_fhir`
    sys.path.insert(0, str(ROOT))

from tests.support.azurite import Azurite  # noqa: E402
from tests.support.ports import free_port  # noqa: E402
from tests.support.runtime import RuntimeProcess  # noqa: E402

# Share of the resources per type (Observation dominates, as in real exports). Each type is one
# sequential chain of pages in the export, so the largest type bounds how much the types overlap.
DEFAULT_TYPES = "Patient:2,Observation:4,Encounter:2,Condition:2"
MIB = 1024 * 1024
PROFILE_ENV = "BENCH_EXPORT_PROFILE"
POLL_S = 0.1


def parse_weights(text: str) -> dict[str, int]:
    """`Type:weight,...` (a bare `Type` weighs 1)."""
    weights = {}
    for item in text.split(","):
        name, _, weight = item.strip().partition(":")
        weights[name] = int(weight or 1)
    return weights


def split_counts(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """`total` resources shared out by weight; the heaviest type takes the rounding remainder."""
    counts = {t: total * w // sum(weights.values()) for t, w in weights.items()}
    counts[max(weights, key=lambda t: weights[t])] += total - sum(counts.values())
    return counts


# ---- the FHIR test server, in a child process -------------------------------------------------


def serve_fhir(counts: Mapping[str, int], resource_bytes: int, port: int) -> None:
    """Child process: serve until stdin closes (the parent ended, however it ended) or SIGTERM."""
    from tests.support.fhir_server import FhirTestServer

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with FhirTestServer(counts, resource_bytes=resource_bytes, port=port):
        print("ready", flush=True)
        sys.stdin.read()


class FhirProcess:
    def __init__(self, counts: Mapping[str, int], resource_bytes: int) -> None:
        self.counts = dict(counts)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.export_fhir", "--serve-fhir", json.dumps(self.counts),
             "--resource-bytes", str(resource_bytes), "--port", str(self.port)],
            cwd=str(ROOT), stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        try:
            if self.proc.stdout.readline().strip() != b"ready":
                raise RuntimeError("the FHIR test server did not start")
        except BaseException:  # Ctrl-C while it starts included: leave no server behind
            self.stop()
            raise

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/fhir"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


def cpu_seconds(pid: int, children: bool = True) -> float:
    """User + system CPU seconds of `pid` (and of its live descendants)."""
    try:
        proc = psutil.Process(pid)
        procs = [proc, *(proc.children(recursive=True) if children else ())]
    except psutil.Error:
        return 0.0
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            total += t.user + t.system
    return total


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy so far (all cores, all processes)."""
    t = psutil.cpu_times()
    return float(sum(t) - t.idle - getattr(t, "iowait", 0.0))


# ---- RSS sampling -----------------------------------------------------------------------------


@dataclass
class RssSampler:
    """Samples RSS of `pid` plus its descendants every `interval` s on a thread."""

    pid: int
    interval: float = 0.1
    samples: list[tuple[float, int]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def rss(self) -> int:
        proc = psutil.Process(self.pid)
        total = int(proc.memory_info().rss)
        for child in proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                total += child.memory_info().rss
        return total

    def _run(self) -> None:
        t0 = time.perf_counter()
        while not self._stop.is_set():
            with contextlib.suppress(psutil.Error):
                self.samples.append((time.perf_counter() - t0, self.rss()))
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    @property
    def peak(self) -> int:
        return max((r for _, r in self.samples), default=0)


# ---- ours: the whole service ------------------------------------------------------------------


class ProfiledRuntime(RuntimeProcess):
    """The runtime under cProfile (every thread), when BENCH_EXPORT_PROFILE is set."""

    def __init__(self, *args: Any, profile_out: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.profile_out = profile_out

    def start(self, wait: bool = True, timeout: float = 60.0) -> RuntimeProcess:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, **self.env, PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.export_fhir", "--profiled-runtime", str(self.profile_out), "--",
             "--app-root", str(self.app_root), "--state-dir", str(self.state_dir), "--port", str(self.port)],
            cwd=str(self.app_root), env=env, stdout=self._log_file, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if wait:
            self.wait_ready(timeout)
        return self


def run_profiled_runtime(out: str, argv: list[str]) -> int:
    """Child process: `python -m selfhost ARGV` with one cProfile.Profile per thread, merged at exit."""
    import cProfile
    import pstats

    from selfhost.__main__ import parse_args
    from selfhost.process import main as selfhost_main

    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()
        try:
            original_run(self)
        finally:
            prof.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    args = parse_args(argv)
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    try:
        code = selfhost_main(args.app_root, args.state_dir, args.port)
    finally:
        main_prof.disable()
        # Threads still running keep profiling; their stats are snapshotted as they are now.
        stats = pstats.Stats(main_prof)
        with lock:
            for prof in profiles:
                with contextlib.suppress(TypeError):  # a profile that saw no call
                    stats.add(prof)
        stats.dump_stats(out)
    return code


def export_body(base_url: str, types: list[str], page_size: int, prefix: str) -> dict[str, Any]:
    return {
        "source": {"kind": "fhir", "base_url": base_url, "types": types, "page_size": page_size},
        "destination": {"kind": "blob", "container": "bench", "path_prefix": prefix},
        "requested_by": "bench@example.com",
    }


@dataclass
class ExportRun:
    resources: int
    seconds: float
    idle_rss: int
    peak_rss: int
    samples: int
    bytes_written: int
    cpu: dict[str, float]  # CPU seconds during the export: runtime, azurite, fhir server
    rss_quarters: list[int]  # peak RSS in each quarter of the export
    status_get_cpu: float  # runtime CPU seconds per GET /api/exports/{id}
    others: float  # cores used by processes outside the benchmark during the export
    type_done: dict[str, float]  # seconds from submission until each type's sub-orchestration ended

    @property
    def rate(self) -> float:
        return self.resources / self.seconds


def run_export(fhir: FhirProcess, page_size: int, work: Path, interval: float, label: str) -> ExportRun:
    """One export of every type of `fhir` in a fresh runtime and a fresh Azurite."""
    from tests.support.export_env import service_env

    total = sum(fhir.counts.values())
    azurite: Azurite | None = None
    rt: RuntimeProcess | None = None
    try:
        # Assigned before start(), so that a start that fails or is interrupted is cleaned up too.
        azurite = Azurite(free_port(), free_port(), free_port(), work / "azurite")
        azurite.start()
        env = service_env(azurite, fhir, work, SELFHOST_LOG_LEVEL="WARNING")  # type: ignore[arg-type]
        profile_dir = os.environ.get(PROFILE_ENV)
        if profile_dir:
            out = Path(profile_dir).resolve() / f"runtime-{label}.prof"
            out.parent.mkdir(parents=True, exist_ok=True)
            rt = ProfiledRuntime(ROOT, work / "state", env=env, profile_out=out)
        else:
            rt = RuntimeProcess(ROOT, work / "state", env=env)
        rt.start()
        assert rt.process is not None and azurite.process is not None
        pids = {"runtime": rt.process.pid, "azurite": azurite.process.pid, "fhir": fhir.proc.pid}
        with httpx.Client(timeout=30, headers={"x-functions-key": rt.function_key}) as http:
            sampler = RssSampler(rt.process.pid, interval)
            time.sleep(1.0)  # let start-up allocations settle before the idle reading
            idle = sampler.rss()
            body = export_body(fhir.base_url, list(fhir.counts), page_size, f"n{total}")
            pids["bench"] = os.getpid()  # its children are the servers: counted without them
            cpu0 = {k: cpu_seconds(pid, k != "bench") for k, pid in pids.items()}
            busy0 = machine_busy_seconds()
            with sampler:
                t0 = time.perf_counter()
                r = http.post(rt.url("api/exports"), json=body)
                if r.status_code != 202:
                    raise RuntimeError(f"export not accepted: {r.status_code} {r.text}")
                job_id = r.json()["id"]
                type_done = wait_for_orchestration(http, rt, job_id, list(fhir.counts), t0)
                elapsed = time.perf_counter() - t0
            cpu = {k: cpu_seconds(pid, k != "bench") - cpu0[k] for k, pid in pids.items()}
            others = max(0.0, machine_busy_seconds() - busy0 - sum(cpu.values())) / elapsed
            status = http.get(rt.url(f"api/exports/{job_id}")).json()
            status_cpu = status_get_cpu(http, rt, job_id, pids["runtime"])
        done = sum(p["resources"] for p in status["progress"].values())
        if status["state"] != "succeeded" or done != total:
            raise RuntimeError(
                f"export ended {status['state']} with {done}/{total} resources: {status['last_error']}"
            )
        written = sum(p["bytes"] for p in status["progress"].values())
        quarters = [
            max(
                (rss for t, rss in sampler.samples if q * elapsed / 4 <= t <= (q + 1) * elapsed / 4),
                default=0,
            )
            for q in range(4)
        ]
        return ExportRun(
            total,
            elapsed,
            idle,
            sampler.peak,
            len(sampler.samples),
            written,
            cpu,
            quarters,
            status_cpu,
            others,
            type_done,
        )
    finally:
        if rt is not None:
            rt.stop()
        if azurite is not None:
            azurite.stop()


def wait_for_orchestration(
    http: httpx.Client, rt: RuntimeProcess, job_id: str, types: list[str], t0: float
) -> dict[str, float]:
    """Wait until the job's orchestration (instance id = job id) ends; it ends right after the
    finish activity wrote the terminal state. Returns when each type's sub-orchestration (instance
    `{job}:{type}`) ended, in seconds since `t0` (checked every 5th poll, +-0.5 s).

    Polled on the durable management API, one SQLite read per call, because a GET
    /api/exports/{id} costs the runtime several storage calls (see `status_get_cpu`): polling that
    every 0.1 s would slow down the very export being measured."""
    master = {"x-functions-key": rt.master_key}  # the durable webhooks want the master or system key

    def ended(instance_id: str) -> bool:
        r = http.get(rt.url(f"runtime/webhooks/durabletask/instances/{instance_id}"),
                     params={"showInput": "false"}, headers=master)  # fmt: skip
        if r.status_code == 404:
            return False  # a sub-orchestration not started yet
        if r.status_code not in (200, 202):
            raise RuntimeError(f"orchestration status of {instance_id}: {r.status_code} {r.text[:500]}")
        return r.json()["runtimeStatus"] not in ("Pending", "Running", "ContinuedAsNew")

    type_done: dict[str, float] = {}
    polls = 0
    while True:
        if polls % 5 == 0:
            for t in types:
                if t not in type_done and ended(f"{job_id}:{t}"):
                    type_done[t] = time.perf_counter() - t0
        if ended(job_id):
            now = time.perf_counter() - t0
            return {t: type_done.get(t, now) for t in types}
        assert rt.process is not None
        if rt.process.poll() is not None:
            raise RuntimeError(f"runtime exited:\n{rt.log_text()[-3000:]}")
        polls += 1
        time.sleep(POLL_S)


def status_get_cpu(http: httpx.Client, rt: RuntimeProcess, job_id: str, pid: int, calls: int = 10) -> float:
    """Runtime CPU seconds per GET /api/exports/{id}, measured on the idle runtime after the export."""
    before = cpu_seconds(pid)
    for _ in range(calls):
        http.get(rt.url(f"api/exports/{job_id}")).raise_for_status()
    return (cpu_seconds(pid) - before) / calls


# ---- baseline: a plain paging loop ------------------------------------------------------------


@dataclass
class BaselineRun:
    resources: int
    seconds: float
    cpu: dict[str, float]  # CPU seconds: this loop, fhir server
    others: float  # cores used by processes outside the benchmark meanwhile

    @property
    def rate(self) -> float:
        return self.resources / self.seconds


def run_baseline(fhir: FhirProcess, page_size: int, out: Path) -> BaselineRun:
    """Page every type in turn, write each page's resources as NDJSON."""
    total = 0
    me = psutil.Process()
    cpu0 = {"loop": sum(me.cpu_times()[:2]), "fhir": cpu_seconds(fhir.proc.pid)}
    busy0 = machine_busy_seconds()
    t0 = time.perf_counter()
    with httpx.Client(timeout=120) as client, open(out, "wb") as f:
        for resource_type in fhir.counts:
            url: str | None = f"{fhir.base_url}/{resource_type}?_count={page_size}"
            while url:
                r = client.get(url, headers={"Accept": "application/fhir+json"})
                r.raise_for_status()
                bundle = json.loads(r.content)
                lines = [
                    json.dumps(e["resource"], separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
                    for e in bundle.get("entry", ())
                ]
                f.write(b"".join(lines))
                total += len(lines)
                url = next(
                    (link["url"] for link in bundle.get("link", ()) if link["relation"] == "next"), None
                )
    elapsed = time.perf_counter() - t0
    out.unlink()
    cpu = {"loop": sum(me.cpu_times()[:2]) - cpu0["loop"], "fhir": cpu_seconds(fhir.proc.pid) - cpu0["fhir"]}
    others = max(0.0, machine_busy_seconds() - busy0 - sum(cpu.values())) / elapsed
    expected = sum(fhir.counts.values())
    if total != expected:
        raise RuntimeError(f"baseline read {total} resources, expected {expected}")
    return BaselineRun(total, elapsed, cpu, others)


# ---- main -------------------------------------------------------------------------------------


@contextlib.contextmanager
def fhir_servers() -> Iterator[dict[int, FhirProcess]]:
    servers: dict[int, FhirProcess] = {}
    try:
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resources", type=int, default=200_000, help="export size for the throughput ratio")
    parser.add_argument("--checkpoints", default="50000,200000", help="export sizes for the RSS comparison")
    parser.add_argument("--page-size", type=int, default=1000)
    parser.add_argument("--resource-bytes", type=int, default=1024)
    parser.add_argument(
        "--types", default=DEFAULT_TYPES, help="resource types and their shares, Type:weight,..."
    )
    parser.add_argument("--rounds", type=int, default=3, help="baseline + one export per size, repeated")
    parser.add_argument("--interval", type=float, default=0.1, help="RSS sampling interval, s")
    parser.add_argument("--serve-fhir", metavar="COUNTS_JSON", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--profiled-runtime", metavar="OUT", help=argparse.SUPPRESS)
    args, rest = parser.parse_known_args()
    if args.serve_fhir:
        serve_fhir(json.loads(args.serve_fhir), args.resource_bytes, args.port)
        return
    if args.profiled_runtime:
        sys.exit(run_profiled_runtime(args.profiled_runtime, [a for a in rest if a != "--"]))
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")

    sizes = sorted({int(s) for s in args.checkpoints.split(",") if s.strip()} | {args.resources})
    # SIGTERM (e.g. `timeout`) unwinds like Ctrl-C, so every `finally` below stops its servers;
    # SIGINT is set as well because a shell's background job starts with it ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    load = os.getloadavg()
    print(
        f"machine: {os.cpu_count()} CPUs, load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}", flush=True
    )
    tmp = Path(tempfile.mkdtemp(prefix="bench-export-fhir-"))
    runs: list[tuple[int, ExportRun]] = []
    baselines: list[tuple[int, BaselineRun]] = []
    try:
        with fhir_servers() as servers:
            for n in sizes:
                servers[n] = FhirProcess(split_counts(n, parse_weights(args.types)), args.resource_bytes)
            main_server = servers[args.resources]
            shares = ", ".join(f"{t} {c}" for t, c in main_server.counts.items())
            print(f"{args.resources} resources of ~{args.resource_bytes} bytes: {shares}", flush=True)
            for round_no in range(1, args.rounds + 1):
                b = run_baseline(main_server, args.page_size, tmp / "baseline.ndjson")
                baselines.append((round_no, b))
                print(f"round {round_no} baseline: {b.seconds:.1f}s ({b.rate:.0f}/s)", flush=True)
                for n in sizes:
                    work = tmp / f"export-{round_no}-{n}"
                    run = run_export(servers[n], args.page_size, work, args.interval, f"r{round_no}-{n}")
                    runs.append((round_no, run))
                    shutil.rmtree(work, ignore_errors=True)
                    print(f"round {round_no} export {n}: {run.seconds:.1f}s ({run.rate:.0f}/s), "
                          f"peak RSS {run.peak_rss / MIB:.0f} MiB", flush=True)  # fmt: skip
    except KeyboardInterrupt:
        print("interrupted; every server stopped", file=sys.stderr)
        sys.exit(130)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(args.resources, sizes, runs, baselines)


def report(
    resources: int,
    sizes: list[int],
    runs: list[tuple[int, ExportRun]],
    baselines: list[tuple[int, BaselineRun]],
) -> None:
    """The tables. CPU columns are seconds of user+system time; "others" is the average number of
    cores that processes outside this benchmark used meanwhile (the machine is shared)."""
    print()
    head = f"{'round':<6}{'run':<14}{'seconds':>8}{'res/s':>7}{'CPU s: ours':>12}{'azurite':>8}{'fhir':>6}{'others':>7}"
    print(f"{head}{'idle RSS':>10}{'peak RSS':>10}  peak RSS by quarter (MiB)")
    for round_no in sorted({r for r, _ in baselines}):
        for _, b in (x for x in baselines if x[0] == round_no):
            print(f"{round_no:<6}{'baseline':<14}{b.seconds:>8.1f}{b.rate:>7.0f}{b.cpu['loop']:>12.1f}{'-':>8}"
                  f"{b.cpu['fhir']:>6.1f}{b.others:>7.2f}")  # fmt: skip
        for _, r in (x for x in runs if x[0] == round_no):
            quarters = " ".join(f"{q / MIB:.0f}" for q in r.rss_quarters)
            print(f"{round_no:<6}{f'export {r.resources}':<14}{r.seconds:>8.1f}{r.rate:>7.0f}{r.cpu['runtime']:>12.1f}"
                  f"{r.cpu['azurite']:>8.1f}{r.cpu['fhir']:>6.1f}{r.others:>7.2f}{r.idle_rss / MIB:>10.1f}"
                  f"{r.peak_rss / MIB:>10.1f}  {quarters}")  # fmt: skip
    print(
        "(CPU s: ours = the runtime for exports, the paging loop for baselines; others = cores busy outside)"
    )
    for round_no, r in runs:
        ends = sorted(r.type_done.items(), key=lambda item: item[1])
        print(
            f"round {round_no} export {r.resources}, types done after: "
            + ", ".join(f"{t} {s:.1f}s" for t, s in ends)
        )
    per_get = 1000 * min(r.status_get_cpu for _, r in runs)
    print(f"one GET /api/exports/{{id}} costs the runtime {per_get:.0f} ms CPU (measured after an export)")

    ours = [r for _, r in runs if r.resources == resources]
    base = [b for _, b in baselines]
    best_ours, best_base = max(r.rate for r in ours), max(b.rate for b in base)
    print()
    print(f"{'measure (best of the rounds)':<48}{'ours':>9}{'baseline':>10}{'ratio':>7}")

    def row(label: str, a: float, b: float, fmt: str) -> None:
        print(f"{label:<48}{a:>9{fmt}}{b:>10{fmt}}{a / b:>7.2f}")

    row(f"resources/s, {resources} resources", best_ours, best_base, ".0f")
    row("CPU ms per 1000 resources, runtime vs loop", min(1e6 * r.cpu["runtime"] / r.resources for r in ours),
        min(1e6 * b.cpu["loop"] / b.resources for b in base), ".1f")  # fmt: skip
    row("CPU ms per 1000 resources, all processes",
        min(1e6 * (r.cpu["runtime"] + r.cpu["azurite"] + r.cpu["fhir"]) / r.resources for r in ours),
        min(1e6 * (b.cpu["loop"] + b.cpu["fhir"]) / b.resources for b in base), ".1f")  # fmt: skip
    peak = {n: max(r.peak_rss for _, r in runs if r.resources == n) / MIB for n in sizes}
    row(f"highest peak RSS MiB, {sizes[-1]} vs {sizes[0]} resources", peak[sizes[-1]], peak[sizes[0]], ".1f")
    load = os.getloadavg()
    print(
        "targets: resources/s ratio >= 0.8; peak RSS ratio ~1.0 (peak does not grow with export size). "
        f"Load average now {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )


if __name__ == "__main__":
    main()
