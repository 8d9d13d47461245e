"""`make package`: the deployment zip of the function app, and the check that it works alone.

    python -m scripts.package [--output dist/bulk-export.zip] [--check]

The zip holds what Azure runs and nothing else: every file of the repository that `.funcignore`
does not exclude (gitignore syntax, as Core Tools and azd read it), stored with fixed timestamps
in sorted order, so the same tree always gives the same bytes. Azure (Flex Consumption, remote
build) installs requirements.txt itself; the zip carries no packages.

`--check` then proves the package complete: it unpacks the zip, installs only requirements.txt
(pinned by constraints.txt) into a clean virtual environment, imports `function_app` from the
unpacked folder with nothing else on the path and checks every binding for Azure
(scripts/check_bindings.py) against the app settings infra/ gives. The environment is cached per
requirements hash under `.cache/package-venvs/`, so only the first check pays for the install.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from scripts import infra_text

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "dist" / "bulk-export.zip"
VENV_CACHE = ROOT / ".cache" / "package-venvs"
CHECKER = ROOT / "scripts" / "check_bindings.py"
ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # the earliest a zip can store: no build time leaks in


@dataclass(frozen=True)
class Rule:
    pattern: re.Pattern[str]
    negate: bool
    dir_only: bool


class IgnoreRules:
    """The rules of a `.funcignore` (gitignore syntax): the last matching rule decides, and
    nothing below an ignored folder can be re-included."""

    def __init__(self, lines: Sequence[str]) -> None:
        self.rules = [rule for line in lines if (rule := _rule(line)) is not None]

    @classmethod
    def load(cls, path: Path) -> IgnoreRules:
        return cls(path.read_text().splitlines() if path.exists() else [])

    def ignored(self, rel: str, is_dir: bool) -> bool:
        decision = False
        for rule in self.rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.pattern.fullmatch(rel):
                decision = not rule.negate
        return decision

    def files(self, root: Path) -> Iterator[Path]:
        """Every file under `root` that is not ignored, in sorted order; ignored folders are not entered."""
        for dirpath, dirnames, filenames in os.walk(root):
            base = Path(dirpath)
            rel_base = base.relative_to(root).as_posix()
            prefix = "" if rel_base == "." else rel_base + "/"
            dirnames[:] = sorted(d for d in dirnames if not self.ignored(prefix + d, True))
            for name in sorted(filenames):
                if not self.ignored(prefix + name, False) and not (base / name).is_symlink():
                    yield base / name


def _rule(line: str) -> Rule | None:
    text = line.rstrip()
    if not text or text.startswith("#"):
        return None
    negate = text.startswith("!")
    text = text[1:] if negate else text
    dir_only = text.endswith("/")
    text = text.rstrip("/")
    anchored = "/" in text
    text = text.lstrip("/")
    body = _glob_to_regex(text)
    prefix = "" if anchored else "(?:.*/)?"
    return Rule(re.compile(prefix + body), negate, dir_only)


def _glob_to_regex(glob: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif glob.startswith("**", i):
            out.append(".*")
            i += 2
        elif glob[i] == "*":
            out.append("[^/]*")
            i += 1
        elif glob[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(glob[i]))
            i += 1
    return "".join(out)


def build(output: Path = DEFAULT_OUTPUT, root: Path = ROOT) -> list[str]:
    """Write the zip; return the names it holds."""
    rules = IgnoreRules.load(root / ".funcignore")
    names: list[str] = []
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in rules.files(root):
            if path.resolve() in (output.resolve(), partial.resolve()):
                continue
            name = path.relative_to(root).as_posix()
            info = zipfile.ZipInfo(name, ZIP_TIME)
            info.external_attr = (0o755 if os.access(path, os.X_OK) else 0o644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, path.read_bytes())
            names.append(name)
    partial.replace(output)
    return names


def requirements_hash(root: Path = ROOT) -> str:
    digest = hashlib.sha256(f"{sys.version_info[:3]}".encode())
    for name in ("requirements.txt", "constraints.txt"):
        digest.update(name.encode() + b"\0" + (root / name).read_bytes())
    return digest.hexdigest()[:16]


def clean_venv(root: Path = ROOT, cache: Path = VENV_CACHE) -> Path:
    """A virtual environment with only requirements.txt installed, made once per requirements hash.

    Made under a lock, and marked complete only after pip succeeded: an interrupted or failed
    install is thrown away and made again by the next call, never used.
    """
    target = cache / requirements_hash(root)
    stamp = target / ".complete"
    if stamp.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists():
            return target
        shutil.rmtree(target, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
        pip = subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "-r", str(root / "requirements.txt"), "-c", str(root / "constraints.txt")],
            capture_output=True, text=True,
        )  # fmt: skip
        if pip.returncode != 0:
            raise RuntimeError(
                f"pip install -r requirements.txt failed in {target}:\n{pip.stdout}{pip.stderr}"
            )
        stamp.touch()
    return target


def check(zip_path: Path, work: Path, root: Path = ROOT) -> subprocess.CompletedProcess[str]:
    """Unpack `zip_path` into `work`/app and run the bindings check there in the clean venv."""
    app = work / "app"
    shutil.rmtree(app, ignore_errors=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(app)
    settings = work / "azure-settings.json"
    settings.write_text(json.dumps(infra_text.app_setting_values(root / "infra"), indent=2))
    venv = clean_venv(root)
    # -I: only the unpacked app (added by the checker) and the venv's packages are importable;
    # an empty environment: importing the app must not need a setting.
    return subprocess.run(
        [str(venv / "bin" / "python"), "-I", str(CHECKER), "--app-root", str(app), "--settings", str(settings)],
        cwd=app, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, capture_output=True, text=True,
    )  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--check", action="store_true", help="install requirements.txt alone and check the bindings"
    )
    args = parser.parse_args(argv)
    names = build(args.output)
    size = args.output.stat().st_size
    print(f"package: {args.output} ({len(names)} files, {size / 1024:.0f} KiB)")
    if not args.check:
        return 0
    with tempfile.TemporaryDirectory(prefix="package-check-") as work:
        result = check(args.output, Path(work))
    sys.stdout.write(result.stdout)
    sys.stderr.write(result.stderr)
    return result.returncode


if __name__ == "__main__":
    sys.exit(main())
