"""The process-wide dependency container: settings and SDK clients built once, at the edge.

Activities and HTTP functions call `get_deps()`; tests build a `Deps` themselves. Clients own
connection pools and credentials, so they are made once per process, never per call.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field

import httpx

from shared import jobstore, outbox
from shared.config import Settings
from shared.jobstore import JobStore
from shared.jti_store import BlobJtiStore
from shared.outbox import MemoryOutbox, Outbox
from shared.secrets.base import SecretStore
from shared.secrets.factory import make_secret_store
from shared.smart_auth import SmartAuth, fetch_jwks
from shared.sources.factory import make_http_client


@dataclass(frozen=True)
class Deps:
    settings: Settings
    secrets: SecretStore
    jobs: JobStore
    http: httpx.Client
    smart: SmartAuth
    # The outcome-mail outbox; tests that build a Deps get an in-memory one.
    outbox: Outbox = field(default_factory=MemoryOutbox)


_lock = threading.Lock()
_deps: Deps | None = None


def build_deps(env: Mapping[str, str]) -> Deps:
    settings = Settings.from_env(env)
    secrets = make_secret_store(settings)
    http = make_http_client(settings.outbound)
    smart = SmartAuth(
        settings.smart_clients,
        secrets=secrets,
        jti_store=BlobJtiStore.connect(settings.web_jobs_storage),
        fetch=functools.partial(fetch_jwks, http),
        frontdoor_keys=settings.frontdoor_keys,
    )
    return Deps(
        settings=settings,
        secrets=secrets,
        jobs=jobstore.connect(settings.web_jobs_storage),
        http=http,
        smart=smart,
        outbox=outbox.TableOutbox.connect(
            settings.web_jobs_storage, claim_timeout=dt.timedelta(seconds=settings.mail_claim_timeout_s)
        ),
    )


def get_deps() -> Deps:
    global _deps
    with _lock:
        if _deps is None:
            _deps = build_deps(os.environ)
        return _deps
