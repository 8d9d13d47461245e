"""The one-machine service under systemd: install, status, stop, start, logs, uninstall.

    python -m scripts.service install [--scope user|system] [--state-dir DIR] [--env-file FILE]
    python -m scripts.service status|start|stop|restart|logs|uninstall [--scope user|system]
    python -m scripts.service render [...]      # print the unit that install would write

The unit (deploy/systemd/bulk-export.service.in) runs `scripts.devservers run` from this
checkout with its .venv: Azurite, maildev and the self-hosted runtime on 127.0.0.1, state on
disk in the state folder, logs to the journal, restart on failure, SIGTERM with a clean drain.
`--scope user` (the default) installs a user unit (no root; `loginctl enable-linger` makes it
start at boot); `--scope system` installs a system unit running as `--user` (needs root).
The environment file (created empty if missing, mode 0600) holds this machine's settings.
"""

from __future__ import annotations

import argparse
import getpass
import os
import shlex
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "systemd" / "bulk-export.service.in"
UNIT = "bulk-export.service"
DEFAULT_PORTS = {
    "runtime-port": 7071,
    "azurite-blob-port": 10000,
    "azurite-queue-port": 10001,
    "azurite-table-port": 10002,
    "maildev-smtp-port": 1025,
    "maildev-web-port": 1080,
}
ENV_FILE_TEMPLATE = """\
# Settings of the bulk export service on this machine (NAME=value, one a line); they win over
# local.settings.json. Every setting is described in docs/settings.md. For example:
# SMTP_HOST=smtp.example.org
# SMTP_PORT=587
# MAIL_FROM=bulk-export@example.org
# BATCH_LOCAL_ROOT=/data/acquired
"""


@dataclass(frozen=True)
class Scope:
    name: str  # "user" or "system"

    @property
    def systemctl(self) -> list[str]:
        return ["systemctl", "--user"] if self.name == "user" else ["systemctl"]

    @property
    def journalctl(self) -> list[str]:
        return ["journalctl", "--user"] if self.name == "user" else ["journalctl"]

    def unit_path(self) -> Path:
        if self.name == "user":
            config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            return config / "systemd" / "user" / UNIT
        return Path("/etc/systemd/system") / UNIT

    def default_state_dir(self) -> Path:
        if self.name == "user":
            return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "bulk-export"
        return Path("/var/lib/bulk-export")

    def default_env_file(self) -> Path:
        if self.name == "user":
            config = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
            return config / "bulk-export" / "env"
        return Path("/etc/bulk-export/env")


def render(
    scope: Scope,
    *,
    state_dir: Path,
    env_file: Path,
    ports: dict[str, int],
    user: str | None = None,
    root: Path = ROOT,
    python: Path | None = None,
) -> str:
    """The unit file's text."""
    args = "".join(f" --{name} {port}" for name, port in ports.items() if DEFAULT_PORTS.get(name) != port)
    user_lines = ""
    if scope.name == "system":
        account = user or os.environ.get("SUDO_USER") or getpass.getuser()
        user_lines = f"User={account}\n"
        if state_dir.parent == Path("/var/lib"):  # systemd makes it and gives it to the account
            user_lines += f"StateDirectory={state_dir.name}\n"
    values = {
        "@ROOT@": str(root),
        "@PYTHON@": str(python or root / ".venv" / "bin" / "python"),
        "@STATE_DIR@": shlex.quote(str(state_dir)),
        "@ENV_FILE@": str(env_file),
        "@ARGS@": args,
        "@USER_LINES@": user_lines,
        "@WANTED_BY@": "default.target" if scope.name == "user" else "multi-user.target",
    }
    text = TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(key, value)
    return text


def _run(argv: Sequence[str]) -> int:
    print("+ " + " ".join(shlex.quote(a) for a in argv), flush=True)
    return subprocess.run(list(argv)).returncode


def install(scope: Scope, unit_text: str, env_file: Path) -> int:
    if scope.name == "system" and os.geteuid() != 0:
        print(
            "a system unit needs root: sudo .venv/bin/python -m scripts.service install --scope system "
            "--user $USER (run `make setup` first, as that user)",
            file=sys.stderr,
        )
        return 1
    if not (ROOT / ".venv" / "bin" / "python").exists():
        print("no .venv: run `make setup` first", file=sys.stderr)
        return 1
    path = scope.unit_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(unit_text)
    print(f"wrote {path}")
    if not env_file.exists():
        env_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(env_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(ENV_FILE_TEMPLATE)
        print(f"wrote {env_file} (this machine's settings)")
    for argv in (scope.systemctl + ["daemon-reload"], scope.systemctl + ["enable", "--now", UNIT]):
        code = _run(argv)
        if code:
            return code
    follow = " ".join(scope.journalctl + ["-u", UNIT, "-f"])
    print(f"installed; follow its log with: {follow}")
    if scope.name == "user":
        print("to start it at boot without logging in: loginctl enable-linger $USER")
    return 0


def uninstall(scope: Scope) -> int:
    _run(scope.systemctl + ["disable", "--now", UNIT])
    path = scope.unit_path()
    if path.exists():
        path.unlink()
        print(f"removed {path} (the state folder and the environment file stay)")
    return _run(scope.systemctl + ["daemon-reload"])


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "command", choices=("install", "render", "status", "start", "stop", "restart", "logs", "uninstall")
    )
    parser.add_argument("--scope", choices=("user", "system"), default="user")
    parser.add_argument(
        "--state-dir", type=Path, help="default: ~/.local/state/bulk-export or /var/lib/bulk-export"
    )
    parser.add_argument(
        "--env-file", type=Path, help="default: ~/.config/bulk-export/env or /etc/bulk-export/env"
    )
    parser.add_argument("--user", help="system scope: the account the service runs as (default: $SUDO_USER)")
    for name, port in DEFAULT_PORTS.items():
        parser.add_argument(f"--{name}", type=int, default=port)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    scope = Scope(args.scope)
    state_dir = (args.state_dir or scope.default_state_dir()).expanduser().absolute()
    env_file = (args.env_file or scope.default_env_file()).expanduser().absolute()
    ports = {name: getattr(args, name.replace("-", "_")) for name in DEFAULT_PORTS}
    unit_text = render(scope, state_dir=state_dir, env_file=env_file, ports=ports, user=args.user)
    if args.command == "render":
        sys.stdout.write(unit_text)
        return 0
    if args.command == "install":
        return install(scope, unit_text, env_file)
    if args.command == "uninstall":
        return uninstall(scope)
    if args.command == "logs":
        return _run(scope.journalctl + ["-u", UNIT, "-n", "200", "--no-pager"])
    extra = ["--no-pager"] if args.command == "status" else []
    return _run(scope.systemctl + [args.command, UNIT, *extra])


if __name__ == "__main__":
    sys.exit(main())
