"""Where the service is and which key opens it: `--url`/`BULK_EXPORT_URL`, `--key`/`BULK_EXPORT_KEY`.

Without a key, a local URL (127.0.0.1, localhost, ::1) uses the default function key of the local
runtime's `.state/runtime/keys.json` (looked up from the current folder, then from the checkout
this package lives in), the file `make run` writes. Nothing here prints or logs a key: `Target`
hides it from `repr`, and `key_source` says where it came from instead.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from cli.errors import ConfigError

__all__ = [
    "DEFAULT_URL",
    "KEY_ENV",
    "KEYS_FILE",
    "REQUESTED_BY_ENV",
    "URL_ENV",
    "Target",
    "is_local",
    "local_key_files",
    "normalize_url",
    "resolve_target",
]

DEFAULT_URL = "http://127.0.0.1:7071"
URL_ENV = "BULK_EXPORT_URL"
KEY_ENV = "BULK_EXPORT_KEY"
REQUESTED_BY_ENV = "BULK_EXPORT_REQUESTED_BY"
KEYS_FILE = Path(".state") / "runtime" / "keys.json"
_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_CHECKOUT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Target:
    """The service's base URL (no trailing `/`, no `/api`) and its key, if any."""

    url: str
    key: str | None = field(default=None, repr=False)
    key_source: str = "none"


def normalize_url(url: str) -> str:
    """`url` as a base URL: http(s) with a host; a trailing `/` or `/api` is dropped."""
    text = url.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url must be an http:// or https:// URL with a host, not {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(f"--url takes no query or fragment: {url!r}")
    return text.removesuffix("/api")


def is_local(url: str) -> bool:
    return (urlsplit(url).hostname or "") in _LOCAL_HOSTS


def local_key_files(cwd: Path | None = None) -> list[Path]:
    """Where a local runtime's keys may be: under the current folder, then under the checkout."""
    found: list[Path] = []
    for root in (cwd or Path.cwd(), _CHECKOUT):
        path = (root / KEYS_FILE).resolve()
        if path not in found:
            found.append(path)
    return found


def _read_local_key(path: Path) -> str | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read the local key from {path}: {exc}") from None
    key = (data.get("functionKeys") or {}).get("default") if isinstance(data, dict) else None
    if not isinstance(key, str) or not key:
        raise ConfigError(f"{path} holds no default function key (functionKeys.default)")
    return key


def resolve_target(
    url: str | None,
    key: str | None,
    env: Mapping[str, str] | None = None,
    key_files: Sequence[Path] | None = None,
) -> Target:
    """The URL and key from the options, else the environment, else the defaults above."""
    env = os.environ if env is None else env
    base = normalize_url(url or env.get(URL_ENV) or DEFAULT_URL)
    if key:
        return Target(base, key, "--key")
    if env.get(KEY_ENV):
        return Target(base, env[KEY_ENV], KEY_ENV)
    if is_local(base):
        for path in local_key_files() if key_files is None else key_files:
            local = _read_local_key(path)
            if local:
                return Target(base, local, str(path))
    return Target(base)
