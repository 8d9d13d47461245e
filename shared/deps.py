"""The process-wide dependency container: settings and SDK clients built once, at the edge.

Activities and HTTP functions call `get_deps()`; tests build a `Deps` themselves. Clients own
connection pools and credentials, so they are made once per process, never per call.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass

import httpx

from shared.config import Settings
from shared.jobstore import JobStore
from shared.secrets.base import SecretStore
from shared.secrets.factory import make_secret_store
from shared.sources.factory import shared_http_client


@dataclass(frozen=True)
class Deps:
    settings: Settings
    secrets: SecretStore
    jobs: JobStore
    http: httpx.Client


_lock = threading.Lock()
_deps: Deps | None = None


def build_deps(env: Mapping[str, str]) -> Deps:
    settings = Settings.from_env(env)
    return Deps(
        settings=settings,
        secrets=make_secret_store(settings),
        jobs=JobStore.connect(settings.web_jobs_storage),
        http=shared_http_client(),
    )


def get_deps() -> Deps:
    global _deps
    with _lock:
        if _deps is None:
            _deps = build_deps(os.environ)
        return _deps
