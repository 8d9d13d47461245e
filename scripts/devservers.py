#!/usr/bin/env python3
"""The local servers behind `make run`: Azurite, maildev and the self-hosted Functions runtime.

`devservers.py run` starts Azurite and maildev on 127.0.0.1, waits until they answer, creates
local.settings.json from the example when it is missing, starts `python -m selfhost` pointed at
them, prints the URLs and keys, and on Ctrl-C, SIGTERM or SIGHUP stops the runtime first (no
function is cut off by a vanished Azurite), then Azurite with SIGTERM (it flushes its metadata on
SIGTERM; SIGKILL loses the last ~5 s of writes), then maildev.

If the runtime dies on its own (a crash, `kill -9`), it is started again after a back-off
(scripts/supervisor.py: 1 s, doubling to 30 s, at most 5 restarts in 10 minutes) while Azurite
and maildev stay up; its durable store loses nothing, so running jobs resume. Azurite or maildev
dying, or the runtime past its restart limit, stops everything with exit code 1 (under systemd,
the unit then restarts as a whole).

Each child runs in a session of its own, so a Ctrl-C that reaches the whole terminal process
group (make and this script) does not reach the children and the order above holds; on Linux
the children also get SIGTERM if this script dies without cleaning up. Standard library only.
Must not print secrets other than the local runtime keys it is asked to show.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

if __package__ in (None, ""):  # run as a file (python scripts/devservers.py): find `scripts`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from scripts.supervisor import RestartTracker, describe_exit  # noqa: E402 - after the path fix

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ACCOUNT = "devstoreaccount1"
# The well-known Azurite development key: public, documented by Microsoft, not a secret.
ACCOUNT_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
READY_TIMEOUT_S = {"Azurite": 30.0, "maildev": 30.0, "runtime": 90.0}
# Grace before SIGKILL: the runtime finishes in-flight invocations; Azurite flushes to disk.
STOP_GRACE_S = {"runtime": 20.0, "Azurite": 15.0, "maildev": 10.0}


class DevServersError(Exception):
    """A server could not be started; the message says which one and why."""


class StopRequested(Exception):
    """A stop signal arrived while the servers were still starting."""


@dataclass(frozen=True)
class Ports:
    """Every port `make run` listens on; each is overridable by the make variable named in `named`."""

    runtime: int = 7071
    blob: int = 10000
    queue: int = 10001
    table: int = 10002
    smtp: int = 1025
    mail_web: int = 1080

    def named(self) -> list[tuple[str, str, int]]:
        """(what, make variable, port) for messages."""
        return [
            ("runtime", "RUNTIME_PORT", self.runtime),
            ("Azurite blob", "AZURITE_BLOB_PORT", self.blob),
            ("Azurite queue", "AZURITE_QUEUE_PORT", self.queue),
            ("Azurite table", "AZURITE_TABLE_PORT", self.table),
            ("maildev SMTP", "MAILDEV_SMTP_PORT", self.smtp),
            ("maildev web", "MAILDEV_WEB_PORT", self.mail_web),
        ]


@dataclass(frozen=True)
class Options:
    """Where things are: the app, the state folder (Azurite data, mail, runtime state, logs), tools."""

    app_root: Path
    state_dir: Path
    ports: Ports = field(default_factory=Ports)
    node_bin: Path = ROOT / "node_modules" / ".bin"
    python: str = sys.executable

    @property
    def runtime_state(self) -> Path:
        return self.state_dir / "runtime"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"


def azurite_connection_string(ports: Ports) -> str:
    """Explicit endpoints: `UseDevelopmentStorage=true` only works on the default ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"BlobEndpoint=http://{HOST}:{ports.blob}/{ACCOUNT};"
        f"QueueEndpoint=http://{HOST}:{ports.queue}/{ACCOUNT};"
        f"TableEndpoint=http://{HOST}:{ports.table}/{ACCOUNT};"
    )


def azurite_command(opts: Options) -> list[str]:
    p = opts.ports
    return [
        str(opts.node_bin / "azurite"),
        "--blobHost", HOST, "--blobPort", str(p.blob),
        "--queueHost", HOST, "--queuePort", str(p.queue),
        "--tableHost", HOST, "--tablePort", str(p.table),
        "--location", str(opts.state_dir / "azurite"),
        # Current SDKs send API versions newer than Azurite knows; telemetry would leave the machine.
        "--skipApiVersionCheck", "--loose", "--disableTelemetry", "--silent",
    ]  # fmt: skip


def maildev_command(opts: Options) -> list[str]:
    p = opts.ports
    return [
        str(opts.node_bin / "maildev"),
        "--ip", HOST, "--web-ip", HOST,
        "--smtp", str(p.smtp), "--web", str(p.mail_web),
        "--mail-directory", str(opts.state_dir / "mail"),
    ]  # fmt: skip


def runtime_command(opts: Options) -> list[str]:
    return [
        opts.python, "-m", "selfhost",
        "--app-root", str(opts.app_root),
        "--state-dir", str(opts.runtime_state),
        "--port", str(opts.ports.runtime),
    ]  # fmt: skip


def runtime_environment(opts: Options, base: Mapping[str, str]) -> dict[str, str]:
    """The runtime's environment: on non-default ports, also where Azurite and maildev listen.

    On the default ports local.settings.json (`UseDevelopmentStorage=true`, SMTP 127.0.0.1:1025)
    already points there and stays in charge; other ports cannot be expressed by it, so the
    environment, which the runtime prefers to local.settings.json, carries them.
    """
    env = dict(base)
    env["PYTHONUNBUFFERED"] = "1"
    # The local secret store (used without KEY_VAULT_URL) lives with the rest of the state.
    env.setdefault("LOCAL_SECRETS_PATH", str(opts.state_dir / "secrets"))
    p, default = opts.ports, Ports()
    if (p.blob, p.queue, p.table) != (default.blob, default.queue, default.table):
        env["AzureWebJobsStorage"] = azurite_connection_string(p)
    if p.smtp != default.smtp:
        env["SMTP_HOST"] = HOST
        env["SMTP_PORT"] = str(p.smtp)
    return env


def frontdoor_keys_environment(opts: Options, env: Mapping[str, str]) -> dict[str, str]:
    """`FHIR_FRONTDOOR_KEYS` = the runtime's default function key, unless the environment or
    local.settings.json sets it: the FHIR front door checks its own keys (its routes are
    anonymous at the host), and locally the function key `make run` prints should open it."""
    if env.get("FHIR_FRONTDOOR_KEYS") or _local_setting(opts.app_root, "FHIR_FRONTDOOR_KEYS"):
        return {}
    return {"FHIR_FRONTDOOR_KEYS": ensure_function_key(opts.runtime_state)}


# Settings `make run` needs that an older local.settings.json may lack: the outbound policy
# refuses internal addresses by default, and locally every server listens on 127.0.0.1; the
# notifier's timer schedule is an app setting (`%MAIL_NOTIFIER_SCHEDULE%`).
# Auto-export: app `recon` sends its generated data as it appears to the WebDAV server of
# `make partner-dav` (127.0.0.1:8081), except `*.tmp` files (README, "Auto-export of sessions").
DEMO_AUTO_EXPORT = {
    "apps": {
        "recon": {
            "destination": {
                "kind": "http_put",
                "base_url": "http://127.0.0.1:8081/dav",
                "url_template": "{base}/{app}/{session}/{path}",
                "create_parents": True,
            },
            "rules": [{"name": "no-temp", "action": "exclude", "names": ["*.tmp"]}],
        }
    }
}
LOCAL_DEFAULTS = {
    "OUTBOUND_ALLOW": "127.0.0.1,localhost",
    "MAIL_NOTIFIER_SCHEDULE": "*/30 * * * * *",
    "GENERATED_DATA_CONTAINER": "generated-data",
    "AUTO_EXPORT_CONFIG": json.dumps(DEMO_AUTO_EXPORT),
    # Any container of Azurite but the service's own (shared.storage_policy); in Azure only `exports`.
    "DESTINATION_CONTAINERS": "*",
}


def local_defaults_environment(opts: Options, env: Mapping[str, str]) -> dict[str, str]:
    """LOCAL_DEFAULTS that neither the environment nor local.settings.json sets."""
    return {
        k: v for k, v in LOCAL_DEFAULTS.items() if not env.get(k) and not _local_setting(opts.app_root, k)
    }


def ensure_function_key(runtime_state: Path) -> str:
    """The runtime's default function key, made now if it has none yet: the runtime keeps the
    keys.json it finds and adds the keys it misses (selfhost/keys.py)."""
    path = runtime_state / "keys.json"
    data: dict[str, object] = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise DevServersError(f"{path} is unreadable ({exc}); delete it to generate new keys") from exc
    function_keys = data.get("functionKeys", {}) if isinstance(data, dict) else None
    if not isinstance(function_keys, dict):
        raise DevServersError(f"{path} is not a runtime keys file; delete it to generate new keys")
    if function_keys.get("default"):
        return str(function_keys["default"])
    key = secrets.token_urlsafe(32)
    data = {**data, "functionKeys": {**function_keys, "default": key}}
    runtime_state.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2)
    return key


def _local_setting(app_root: Path, name: str) -> str | None:
    try:
        values = json.loads((app_root / "local.settings.json").read_text()).get("Values") or {}
    except (OSError, ValueError, AttributeError):
        return None
    value = values.get(name) if isinstance(values, dict) else None
    return value if isinstance(value, str) and value.strip() else None


def ensure_local_settings(app_root: Path) -> bool:
    """Copy local.settings.example.json to local.settings.json when missing; True if created."""
    target = app_root / "local.settings.json"
    if target.exists():
        return False
    shutil.copyfile(app_root / "local.settings.example.json", target)
    return True


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((HOST, port)) == 0


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return int(response.status) == 200
    except (urllib.error.URLError, OSError):
        return False


def check_ports_free(ports: Ports) -> None:
    seen: dict[int, str] = {}
    for what, variable, port in ports.named():
        if port in seen:
            raise DevServersError(f"{what} and {seen[port]} are both set to port {port}")
        seen[port] = what
        if port_open(port):
            raise DevServersError(
                f"port {port} ({what}) is already in use on {HOST}: is another `make run` running? "
                f"Stop it, or pick another port: make run {variable}=<port>"
            )


def _say(message: str, *, err: bool = False) -> None:
    """Print and flush; a closed terminal (SIGHUP) must not interrupt the shutdown that follows."""
    try:
        print(message, file=sys.stderr if err else sys.stdout, flush=True)
    except OSError:
        return


def _pdeathsig_hook() -> Callable[[], None] | None:
    """A pre-exec hook asking Linux to SIGTERM the child when this process dies (even by SIGKILL)."""
    if not sys.platform.startswith("linux"):
        return None
    libc = ctypes.CDLL(None, use_errno=True)  # loaded here, in the parent: the hook only calls it
    pr_set_pdeathsig = 1

    def hook() -> None:
        libc.prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return hook


class Child:
    """One server process in a session of its own, with its output in a log file or the terminal."""

    def __init__(
        self, name: str, argv: Sequence[str], *, cwd: Path, env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:  # fmt: skip
        self.name = name
        self.argv = list(argv)
        self.cwd = cwd
        self.env = dict(env) if env is not None else None
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, preexec: Callable[[], None] | None) -> None:
        if self._log is not None:  # started again after it died: one log handle at a time
            self._log.close()
            self._log = None
        if self.log_path is not None:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            self.argv, cwd=self.cwd, env=self.env, stdin=subprocess.DEVNULL,
            stdout=self._log, stderr=subprocess.STDOUT if self._log else None,
            start_new_session=True, preexec_fn=preexec,
        )  # fmt: skip

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def stop(self, grace_s: float) -> None:
        """SIGTERM the child's process group, SIGKILL it after `grace_s`; no-op if never started."""
        if self.process is None:
            return
        try:
            self._signal_group(signal.SIGTERM)
            try:
                self.process.wait(timeout=grace_s)
            except subprocess.TimeoutExpired:
                _say(f"devservers: {self.name} ignored SIGTERM for {grace_s:.0f}s; killing it", err=True)
                self._signal_group(signal.SIGKILL)
                self.process.wait(timeout=10)
            _say(f"devservers: {self.name} stopped (exit code {self.process.returncode})")
        finally:
            if self._log is not None:
                self._log.close()
                self._log = None

    def _signal_group(self, sig: signal.Signals) -> None:
        assert self.process is not None
        try:
            os.killpg(self.process.pid, sig)  # the group: helpers the server forked go too
        except ProcessLookupError:
            return  # the whole group has already exited

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None:
            return "(see the output above)"
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def wait_ready(name: str, ready: Callable[[], bool], watch: Sequence[Child], stop: threading.Event) -> None:
    """Poll `ready` until it holds; fail if a watched child exits or the deadline passes."""
    timeout = READY_TIMEOUT_S[name]
    deadline = time.monotonic() + timeout
    while True:
        for child in watch:
            code = child.exit_code()
            if code is not None:
                raise DevServersError(
                    f"{child.name} exited with code {code} while starting:\n{child.log_tail()}"
                )
        if stop.is_set():
            raise StopRequested
        if ready():
            return
        if time.monotonic() >= deadline:
            raise DevServersError(f"{name} was not ready after {timeout:.0f}s")
        stop.wait(0.1)


def _read_keys(runtime_state: Path) -> tuple[str, str] | None:
    """(default function key, master key) from the runtime's keys.json, or None if unreadable."""
    try:
        keys = json.loads((runtime_state / "keys.json").read_text())
        return str(keys["functionKeys"]["default"]), str(keys["master"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def banner(opts: Options) -> str:
    p = opts.ports
    base = f"http://{HOST}:{p.runtime}"
    lines = [
        "",
        "Bulk export dev servers are up (Ctrl-C stops them all):",
        f"  runtime   {base}",
        f"  health    {base}/api/health",
        f"  web pages {base}/api/ui  (enter the function key below once per browser tab)",
        f"  Azurite   blob http://{HOST}:{p.blob}/{ACCOUNT}  queue :{p.queue}  table :{p.table}",
        f"  maildev   http://{HOST}:{p.mail_web}  (SMTP {HOST}:{p.smtp})",
        f"  state     {opts.state_dir}",
    ]
    keys = _read_keys(opts.runtime_state)
    if keys is None:
        lines.append("  keys      see the runtime's output above")
    else:
        function_key, master_key = keys
        lines += [
            f"Local keys (also in {opts.runtime_state / 'keys.json'}):",
            f"  function key (default)  {function_key}",
            f"  master key              {master_key}",
            f'Call a function:  curl -H "x-functions-key: {function_key}" {base}/api/<route>',
        ]
    return "\n".join(lines) + "\n"


@dataclass
class Restarter:
    """Starts `child` again when it dies, by `tracker`'s policy; `ready` says when it is back."""

    child: Child
    preexec: Callable[[], None] | None
    ready: Callable[[], bool]
    tracker: RestartTracker = field(default_factory=RestartTracker)
    clock: Callable[[], float] = time.monotonic
    started_at: float = field(default_factory=time.monotonic)
    awaiting_ready: bool = False

    def restart(self, code: int, stop: threading.Event) -> bool:
        """The child exited with `code`: wait the back-off and start it; False to give up."""
        now = self.clock()
        ran_for = now - self.started_at
        delay = self.tracker.on_exit(now, ran_for)
        name, policy = self.child.name, self.tracker.policy
        if delay is None:
            _say(
                f"devservers: {name} died ({describe_exit(code)}) {policy.limit} times within "
                f"{policy.window_s / 60:.0f} min; giving up",
                err=True,
            )
            return False
        _say(
            f"devservers: {name} died ({describe_exit(code)}) after {ran_for:.1f}s; restarting it in "
            f"{delay:.0f}s (restart {self.tracker.count} of at most {policy.limit} in {policy.window_s / 60:.0f} min)",
            err=True,
        )
        if stop.wait(delay):
            return True  # a stop signal during the back-off: the caller stops everything
        self.child.start(self.preexec)
        self.started_at = self.clock()
        self.awaiting_ready = True
        pid = self.child.process.pid if self.child.process else "?"
        _say(f"devservers: {name} restarted (pid {pid})")
        return True

    def poll_ready(self) -> None:
        if self.awaiting_ready and self.ready():
            self.awaiting_ready = False
            _say(f"devservers: {self.child.name} is answering again")


def supervise(children: Sequence[Child], stop: threading.Event, restarter: Restarter | None = None) -> int:
    """Block until a stop signal (0) or until a server dies on its own (1); the restarter's
    child (the runtime) is started again instead, until its restart limit."""
    while not stop.wait(0.5):
        if restarter is not None:
            restarter.poll_ready()
        for child in children:
            code = child.exit_code()
            if code is None:
                continue
            if restarter is not None and child is restarter.child:
                if restarter.restart(code, stop):
                    continue
                return 1
            _say(
                f"devservers: {child.name} exited on its own ({describe_exit(code)}):\n{child.log_tail()}",
                err=True,
            )
            return 1
    return 0


def install_stop_handlers(stop: threading.Event) -> None:
    """Turn SIGINT/SIGTERM/SIGHUP into `stop`: no KeyboardInterrupt can cut a shutdown short."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)


def run(opts: Options, stop: threading.Event, environ: Mapping[str, str]) -> int:
    """Start everything, serve until stopped, stop everything; the process exit code."""
    for tool in ("azurite", "maildev"):
        if not (opts.node_bin / tool).exists():
            raise DevServersError(f"{opts.node_bin / tool} is missing: run `make setup`")
    check_ports_free(opts.ports)
    logs = opts.log_dir
    azurite = Child("Azurite", azurite_command(opts), cwd=opts.app_root, log_path=logs / "azurite.log")
    maildev = Child("maildev", maildev_command(opts), cwd=opts.app_root, log_path=logs / "maildev.log")
    # The runtime writes to the terminal: it prints its own start-up lines, keys and logs.
    runtime_env = runtime_environment(opts, environ)
    runtime = Child("runtime", runtime_command(opts), cwd=opts.app_root, env=runtime_env)
    preexec = _pdeathsig_hook()
    p = opts.ports
    try:
        (opts.state_dir / "azurite").mkdir(parents=True, exist_ok=True)
        (opts.state_dir / "mail").mkdir(parents=True, exist_ok=True)
        azurite.start(preexec)
        maildev.start(preexec)
        wait_ready("Azurite", lambda: all(port_open(x) for x in (p.blob, p.queue, p.table)), [azurite], stop)
        wait_ready("maildev", lambda: http_ok(f"http://{HOST}:{p.mail_web}/healthz"), [maildev], stop)
        if ensure_local_settings(opts.app_root):
            _say("devservers: created local.settings.json from local.settings.example.json")
        runtime.env = {
            **runtime_env,
            **frontdoor_keys_environment(opts, runtime_env),
            **local_defaults_environment(opts, runtime_env),
        }
        runtime.start(preexec)
        servers = [runtime, azurite, maildev]
        runtime_ready = lambda: http_ok(f"http://{HOST}:{p.runtime}/admin/host/ping")  # noqa: E731
        wait_ready("runtime", runtime_ready, servers, stop)
        _say(banner(opts))
        return supervise(servers, stop, Restarter(runtime, preexec, runtime_ready))
    except StopRequested:
        return 0
    except DevServersError as exc:
        _say(f"devservers: {exc}", err=True)
        return 1
    finally:
        for child in (runtime, azurite, maildev):
            child.stop(STOP_GRACE_S[child.name])
        _say("devservers: all servers stopped")


def parse_args(argv: Sequence[str]) -> Options:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    sub = parser.add_subparsers(dest="command", required=True)
    run_p = sub.add_parser("run", help="start Azurite, maildev and the runtime until Ctrl-C")
    defaults = Ports()
    run_p.add_argument("--app-root", type=Path, default=ROOT)
    run_p.add_argument("--state-dir", type=Path, default=ROOT / ".state")
    run_p.add_argument("--runtime-port", type=int, default=defaults.runtime)
    run_p.add_argument("--azurite-blob-port", type=int, default=defaults.blob)
    run_p.add_argument("--azurite-queue-port", type=int, default=defaults.queue)
    run_p.add_argument("--azurite-table-port", type=int, default=defaults.table)
    run_p.add_argument("--maildev-smtp-port", type=int, default=defaults.smtp)
    run_p.add_argument("--maildev-web-port", type=int, default=defaults.mail_web)
    args = parser.parse_args(argv)
    ports = Ports(
        runtime=args.runtime_port, blob=args.azurite_blob_port, queue=args.azurite_queue_port,
        table=args.azurite_table_port, smtp=args.maildev_smtp_port, mail_web=args.maildev_web_port,
    )  # fmt: skip
    return Options(app_root=args.app_root.resolve(), state_dir=args.state_dir.resolve(), ports=ports)


def main(argv: Sequence[str] | None = None) -> int:
    stop = threading.Event()
    install_stop_handlers(stop)  # first: a Ctrl-C during start-up must still stop what started
    opts = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(opts, stop, os.environ)
    except DevServersError as exc:
        _say(f"devservers: {exc}", err=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
