"""End to end: nothing internal leaks (issue 11, point 5). With distinctive secret values, the
module runs exports, batches and front-door calls that succeed and fail, then reads everything a
person or an attacker could read (the runtime's log, every Azurite table entity, queue message
and blob, the durable store under the runtime's state folder, the mails, every HTTP answer with
its headers) and searches it for each secret and its obvious encodings, and for internals
(tracebacks, source paths). Only the secret store (LOCAL_SECRETS_PATH) and the runtime's
keys.json may hold secrets; the log may hold tracebacks but never secrets. Every hit is printed
with where it was found.

The scenarios: a bearer-protected FHIR source exported to another storage account through its
connection string (AccountKey) and through a SAS URL; a source whose `next` links carry a token
in the query; sources that refuse the token (401), answer 403 or 500 echoing the token in their
OperationOutcome, or are not listening at all; a batch to a bearer-protected WebDAV server with
one item refused (403, echoing the token) and retried with the secret again; calls with the
master key and the default key (in the header and in `?code=`); submissions refused with 400
whose secrets are malformed; a SMART Backend Services export through the FHIR front door, and a
refused assertion and token. Operator retries send the secrets again; one resumes from a
checkpoint whose cursor is a next link with its token (stored sealed, `shared.sources.cursor_seal`).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sqlite3
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, quote, quote_plus, urlencode, urlsplit

import httpx
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import Envelope, Session
from azure.data.tables import TableServiceClient
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas
from azure.storage.queue import QueueServiceClient

from tests.support.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, azurite_available, start_azurite
from tests.support.bulk_client import BulkClient, ClientKey
from tests.support.export_env import ROOT, TERMINAL, ExportClient, start_service
from tests.support.fhir_server import Fault, FhirTestServer
from tests.support.ports import free_port
from tests.support.runtime import RuntimeProcess
from tests.support.waiting import wait_until
from tests.support.webdav_server import WebDavTestServer

pytestmark = [pytest.mark.e2e, pytest.mark.azurite]

# Distinctive values: a hit can only come from the value itself.
SOURCE_TOKEN: Final = "src-token-" + secrets.token_urlsafe(24)
WRONG_TOKEN: Final = "wrong-token-" + secrets.token_urlsafe(24)
PAGE_TOKEN: Final = "page-token-" + secrets.token_urlsafe(24)
DAV_TOKEN: Final = "dav-token-" + secrets.token_urlsafe(24)
LEAK_ACCOUNT: Final = "leakacct"
LEAK_KEY: Final = base64.b64encode(secrets.token_bytes(48)).decode()
COUNTS: Final = {"Patient": 12, "Observation": 8}
FAST_RETRY: Final = {"first_retry_interval_ms": 100, "max_attempts": 2}
ADMIN: Final = "ops@example.com"
SMART_KEY: Final = ClientKey.rsa()
CATEGORIES: Final = ("answer", "record", "durable", "state file", "log", "mail")
INTERNALS: Final = ("Traceback (most recent call last)", 'File "/')


# --- what is searched -----------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """One thing that was read: its category, where it is, and its text."""

    category: str
    where: str
    text: str


@dataclass
class Evidence:
    secrets: dict[str, str] = field(default_factory=dict)  # label -> value
    places: list[Place] = field(default_factory=list)
    answers: int = 0
    states: dict[str, str] = field(default_factory=dict)  # scenario -> final state
    internal_paths: list[str] = field(default_factory=list)
    secrets_left: list[str] = field(default_factory=list)  # in the secret store after every job ended
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, category: str, where: str, text: str) -> None:
        with self.lock:
            self.places.append(Place(category, where, text))

    def record_answer(self, response: httpx.Response) -> None:
        response.read()
        request = response.request
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        where = f"{request.method} {request.url.copy_with(query=None)} -> {response.status_code}"
        with self.lock:
            self.answers += 1
        self.add("answer", where, f"{headers}\n\n{response.text}")
        if request.url.path.endswith("/auth/token") and response.status_code == 200:
            # The token answer is where an access token is meant to be; everywhere else it is a leak.
            self.secrets[f"SMART access token {len(self.secrets)}"] = str(response.json()["access_token"])

    def record_request(self, request: httpx.Request) -> None:
        if request.url.path.endswith("/auth/token"):
            form = parse_qs(request.content.decode())
            for assertion in form.get("client_assertion", []):
                self.secrets[f"SMART client assertion {len(self.secrets)}"] = assertion


@dataclass(frozen=True)
class Hit:
    category: str
    where: str
    what: str
    count: int
    context: str  # around the first occurrence

    def __str__(self) -> str:
        times = f" ({self.count} times)" if self.count > 1 else ""
        return f"[{self.category}] {self.where}: {self.what}{times}\n    ...{self.context}..."


def needles(label: str, value: str, shortest: int = 12) -> dict[str, str]:
    """The value and its obvious encodings, by name."""
    found = {
        label: value,
        f"{label} (URL-encoded)": quote(value, safe=""),
        f"{label} (form-encoded)": quote_plus(value),
        f"{label} (base64)": base64.b64encode(value.encode()).decode().rstrip("="),
        f"{label} (base64url)": base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
        f"{label} (JSON)": json.dumps(value)[1:-1],
    }
    parts = urlsplit(value) if value.startswith("http") else None
    if parts is not None and parts.query:  # a SAS URL: its signature alone is the secret
        sig = parse_qs(parts.query).get("sig", [""])[0]
        found.update({f"{label} sig": sig, f"{label} sig (URL-encoded)": quote(sig, safe="")})
    if "AccountKey=" in value:
        key = value.split("AccountKey=", 1)[1].split(";", 1)[0]
        found.update({f"{label} AccountKey": key, f"{label} AccountKey (URL-encoded)": quote(key, safe="")})
    by_text: dict[str, str] = {}
    for name, text in found.items():
        if len(text) >= shortest:
            by_text.setdefault(text.lower(), name)
    return {name: text for text, name in by_text.items()}


def search(place: Place, wanted: Mapping[str, str]) -> list[Hit]:
    """Hits of `wanted` (name -> text, matched case-insensitively: percent-encoding varies)."""
    hits, haystack = [], place.text.lower()
    for name, text in wanted.items():
        start = haystack.find(text.lower())
        if start != -1:
            context = place.text[max(0, start - 100) : start + len(text) + 100]
            context = context.replace(place.text[start : start + len(text)], f"<{name}>")
            count = haystack.count(text.lower())
            hits.append(Hit(place.category, place.where, name, count, " ".join(context.split())))
    return hits


# --- the servers ------------------------------------------------------------------------------


class PagingTokenServer(FhirTestServer):
    """A FHIR server whose `next` links carry a token in the query, as some servers put a session
    or access token there (`...?_getpages=...&token=...`)."""

    def _search(
        self, resource_type: str, params: tuple[tuple[str, str], ...], strict: bool
    ) -> dict[str, Any]:
        bundle = super()._search(
            resource_type, tuple(p for p in params if p[0] not in ("token", "_getpages")), strict
        )
        for link in bundle["link"]:
            if link["relation"] == "next":
                link["url"] += "&" + urlencode({"_getpages": "x", "token": PAGE_TOKEN})
        return bundle


class Mailbox:
    """An aiosmtpd handler that keeps every mail, parsed and as received."""

    def __init__(self) -> None:
        self.received: list[tuple[EmailMessage, bytes]] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Session, envelope: Envelope) -> str:  # noqa: N802
        data = envelope.content if isinstance(envelope.content, bytes) else str(envelope.content).encode()
        with self.lock:
            message = message_from_bytes(data, _class=EmailMessage, policy=policy.default)
            self.received.append((message, data))
        return "250 accepted"


@pytest.fixture(scope="module")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Azurite]:
    """This module's own Azurite, with a second account whose key is distinctive (the
    well-known emulator key could come from anywhere)."""
    if not azurite_available():
        pytest.skip("Azurite is not installed (run `make setup`)")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AZURITE_ACCOUNTS", f"{ACCOUNT}:{ACCOUNT_KEY};{LEAK_ACCOUNT}:{LEAK_KEY}")
        server = start_azurite(tmp_path_factory.mktemp("azurite-leaks"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def fhir() -> Iterator[FhirTestServer]:
    """The service's default source, which the front door exports from (it sends no token)."""
    with FhirTestServer(COUNTS) as server:
        yield server


def leak_connection_string(azurite: Azurite) -> str:
    return (
        f"DefaultEndpointsProtocol=http;AccountName={LEAK_ACCOUNT};AccountKey={LEAK_KEY};"
        f"BlobEndpoint=http://127.0.0.1:{azurite.blob_port}/{LEAK_ACCOUNT};"
    )


def leak_sas_url(azurite: Azurite, container: str) -> str:
    sas = generate_container_sas(
        LEAK_ACCOUNT,
        container,
        account_key=LEAK_KEY,
        permission=ContainerSasPermissions.from_string("racwdl"),
        expiry=datetime.now(UTC) + timedelta(hours=2),
    )
    return f"http://127.0.0.1:{azurite.blob_port}/{LEAK_ACCOUNT}/{container}?{sas}"


# --- the scenarios ----------------------------------------------------------------------------


class Calls:
    """The test's HTTP clients; every answer they receive is evidence."""

    def __init__(self, rt: RuntimeProcess, evidence: Evidence) -> None:
        self.rt, self.evidence = rt, evidence
        self.jobs = ExportClient(rt)
        self.jobs.http.event_hooks = self.hooks()
        self.plain = httpx.Client(timeout=30, event_hooks=self.hooks())

    def hooks(self) -> dict[str, list[Any]]:
        return {"request": [self.evidence.record_request], "response": [self.evidence.record_answer]}

    def close(self) -> None:
        self.jobs.close()
        self.plain.close()

    def post(self, path: str, body: Mapping[str, Any], expect: int = 202) -> httpx.Response:
        r = self.jobs.http.post(self.rt.url(path), json=body)
        assert r.status_code == expect, r.text
        return r

    def wait(self, kind: str, job_id: str, timeout: float = 120) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            r = self.jobs.http.get(self.rt.url(f"api/{kind}/{job_id}"))
            assert r.status_code == 200, r.text
            return dict(r.json()) if r.json()["state"] in TERMINAL else None

        final = wait_until(done, timeout=timeout, interval=0.3, message=f"{kind} {job_id} to end")
        assert final is not None
        return final


def export(base_url: str, token: str | None, destination: dict[str, Any], who: str) -> dict[str, Any]:
    source: dict[str, Any] = {"kind": "fhir", "base_url": base_url, "types": list(COUNTS), "page_size": 5}
    if token is not None:
        source["auth_secret"] = token
    return {"source": source, "destination": destination, "requested_by": who,
            "options": {"retry": FAST_RETRY, "failure_threshold": 1, "commit_every_pages": 1}}  # fmt: skip


def run_exports(calls: Calls, azurite: Azurite, servers: dict[str, FhirTestServer]) -> None:
    conn = leak_connection_string(azurite)
    with BlobServiceClient.from_connection_string(conn) as blobs:
        for container in ("by-key", "by-sas"):
            blobs.create_container(container)
    sas = leak_sas_url(azurite, "by-sas")
    calls.evidence.secrets.update({"destination connection string": conn, "destination SAS URL": sas})

    def dest(prefix: str, secret: str = conn) -> dict[str, Any]:
        container = "by-sas" if secret == sas else "by-key"
        return {"kind": "blob", "container": container, "path_prefix": prefix, "secret": secret}

    url = {name: server.base_url for name, server in servers.items()}
    url["unreachable"] = f"http://127.0.0.1:{free_port()}/fhir"
    bodies = {
        "ok, AccountKey": export(url["secured"], SOURCE_TOKEN, dest("ok"), "a@example.com"),
        "ok, SAS, token in next links": export(url["paging"], None, dest("paged", sas), "b@example.com"),
        "wrong token (401)": export(url["secured"], WRONG_TOKEN, dest("wrong"), "c@example.com"),
        "403 echoing the token": export(url["forbidding"], SOURCE_TOKEN, dest("403"), "d@example.com"),
        "500 echoing the token": export(url["failing"], SOURCE_TOKEN, dest("500", sas), "e@example.com"),
        "unreachable source": export(url["unreachable"], SOURCE_TOKEN, dest("gone"), "f@example.com"),
        # Fails on page 3: the record keeps the checkpoint, whose cursor is a next link.
        "token in next links, 403": export(url["paging, failing"], None, dest("p403"), "h@example.com"),
    }
    started = {name: str(calls.post("api/exports", body).json()["id"]) for name, body in bodies.items()}
    for name, job_id in started.items():
        calls.evidence.states[name] = calls.wait("exports", job_id)["state"]
    # The refused job again, with its secrets sent again, once the source lets it through.
    servers["forbidding"].faults.clear()
    job_id = started["403 echoing the token"]
    again = {"source": {"auth_secret": SOURCE_TOKEN}, "destination": {"secret": conn}}
    calls.post(f"api/jobs/{job_id}/retry", again)
    calls.evidence.states["403, then retried"] = calls.wait("exports", job_id)["state"]
    # Resumed from the checkpoint its record kept, whose cursor is a next link with the token.
    servers["paging, failing"].faults.clear()
    job_id = started["token in next links, 403"]
    calls.post(f"api/jobs/{job_id}/retry", {"destination": {"secret": conn}})
    calls.evidence.states["token in next links, retried"] = calls.wait("exports", job_id)["state"]
    for job_id in started.values():
        for path in (f"api/jobs/{job_id}", f"api/exports/{job_id}"):
            calls.jobs.http.get(calls.rt.url(path))


def run_refused(calls: Calls, servers: dict[str, FhirTestServer]) -> None:
    """Submissions refused with 400: the answer names the field, never quotes the secret."""
    bad_key = "bad-key-" + secrets.token_urlsafe(24)
    bad_sig = "bad-sig-" + secrets.token_urlsafe(24)
    calls.evidence.secrets.update({"refused connection string key": bad_key, "refused SAS sig": bad_sig})
    base = servers["secured"].base_url
    refused = [
        {"kind": "blob", "container": "c1", "secret": f"AccountKey={bad_key};no account here"},
        {"kind": "blob", "container": "c1", "secret": f"DefaultEndpointsProtocol=ftp;AccountKey={bad_key}"},
        {"kind": "blob", "container": "c1", "secret": f"http://10.0.0.7/acct/c1?sv=2024-01-01&sig={bad_sig}"},
        {"kind": "blob", "container": "c1", "secret": f"https://a.blob.core.windows.net/c2?sig={bad_sig}"},
    ]  # fmt: skip
    statuses = set()
    for destination in refused:
        body = export(base, SOURCE_TOKEN, destination, "i@example.com")
        statuses.add(calls.jobs.http.post(calls.rt.url("api/exports"), json=body).status_code)
    body = export(base, SOURCE_TOKEN, refused[0], "i@example.com")
    body["source"]["types"] = ["Not-A-Type"]
    statuses.add(calls.jobs.http.post(calls.rt.url("api/exports"), json=body).status_code)
    calls.evidence.states["refused submissions"] = ",".join(sorted(str(s) for s in statuses))


def run_batch(calls: Calls, azurite: Azurite) -> None:
    files = {f"leaks/scan-{i}.dcm": os.urandom(2000 + i) for i in range(3)}
    with BlobServiceClient.from_connection_string(azurite.connection_string) as blobs:
        container = blobs.get_container_client("acquired")
        container.create_container()
        for name, data in files.items():
            container.upload_blob(name, data)
    with WebDavTestServer(bearer=DAV_TOKEN) as dav:
        denied = sorted(files)[1]
        dav.fail(
            f"/dav/p1/{denied}", 403, times=None, reason=f"token {DAV_TOKEN} may not write here", method="PUT"
        )
        body = {"source": {"kind": "blob", "container": "acquired"}, "items": list(files),
                "destination": {"kind": "http_put", "base_url": dav.base_url, "url_template": "{base}/{project}/{path}",
                                "create_parents": True, "auth": "bearer", "secret": DAV_TOKEN},
                "options": {"retry": FAST_RETRY}, "requested_by": "g@example.com", "labels": {"project": "p1"}}  # fmt: skip
        job_id = str(calls.post("api/batches", body).json()["id"])
        calls.evidence.states["batch, one item 403"] = calls.wait("batches", job_id)["state"]
        dav.clear_faults()
        calls.post(f"api/batches/{job_id}/retry", {"destination": {"secret": DAV_TOKEN}})
        calls.evidence.states["batch, retried"] = calls.wait("batches", job_id)["state"]


def run_key_calls(calls: Calls, rt: RuntimeProcess) -> None:
    master, default = {"x-functions-key": rt.master_key}, {"x-functions-key": rt.function_key}
    ways = [(master, {}), (default, {}), ({}, {"code": rt.master_key}), ({}, {"code": rt.function_key})]
    for headers, params in ways:
        calls.plain.get(rt.url("api/jobs"), headers=headers, params=params)
        calls.plain.get(rt.url("api/metrics"), headers=headers, params=params)
    calls.plain.get(rt.url("api/jobs"), params={"code": "not-a-key-" + secrets.token_hex(8)})
    calls.plain.get(rt.url("api/health"))
    for state in ("pending", "sent", "dead"):
        calls.plain.get(rt.url("api/notifications"), headers=master, params={"state": state, "limit": "500"})
    calls.plain.get(rt.url("runtime/webhooks/durabletask/instances"), params={"code": rt.master_key})


def run_front_door(calls: Calls, rt: RuntimeProcess) -> None:
    client = BulkClient(rt.url("api/fhir"), "leak-client", SMART_KEY, "system/*.read")
    client.http.event_hooks = calls.hooks()
    try:
        status_url = client.start("$export", {"_type": "Patient"})
        manifest = client.manifest(status_url)
        calls.evidence.states["front door export"] = "succeeded" if manifest["output"] else "empty"
        list(client.download(manifest))
        # Refused credentials: neither the answer nor the log may quote them.
        garbage = "garbage-assertion-" + secrets.token_urlsafe(24)  # recorded by the request hook
        assert client.request_token(garbage).status_code == 401
        wrong = "wrong-bearer-" + secrets.token_urlsafe(24)
        calls.evidence.secrets["refused front-door token"] = wrong
        r = client.http.get(rt.url("api/fhir/$export"), headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 401, r.text
        client.http.get(status_url, headers={"x-functions-key": rt.function_key})
        calls.plain.get(rt.url("api/fhir/$export"), params={"_type": "Patient", "code": rt.function_key},
                        headers={"Accept": "application/fhir+json", "Prefer": "respond-async"})  # fmt: skip
    finally:
        client.close()


def send_mail(calls: Calls, rt: RuntimeProcess, box: Mailbox) -> None:
    def all_sent() -> bool:
        r = calls.plain.post(rt.url("admin/functions/send_outcome_mail"), json={"input": ""},
                             headers={"x-functions-key": rt.master_key})  # fmt: skip
        assert r.status_code == 202, r.text
        pending = calls.plain.get(rt.url("api/notifications"), params={"state": "pending"},
                                  headers={"x-functions-key": rt.master_key})  # fmt: skip
        return bool(box.received) and not pending.json()["notifications"]

    wait_until(all_sent, timeout=90, interval=2, message="outcome mails sent")


# --- what is read -----------------------------------------------------------------------------


def collect_storage(evidence: Evidence, azurite: Azurite) -> None:
    for conn in (azurite.connection_string, leak_connection_string(azurite)):
        if "TableEndpoint" in conn:
            with TableServiceClient.from_connection_string(conn) as tables:
                for table in tables.list_tables():
                    for entity in tables.get_table_client(table.name).list_entities():
                        where = f"table {table.name} {entity['PartitionKey']}/{entity['RowKey']}"
                        evidence.add("record", where, json.dumps(dict(entity), default=str))
            with QueueServiceClient.from_connection_string(conn) as queues:
                for queue in queues.list_queues():
                    for message in queues.get_queue_client(queue.name).peek_messages(max_messages=32):
                        where = f"queue {queue.name} message {message.id}"
                        evidence.add("record", where, str(message.content))
        with BlobServiceClient.from_connection_string(conn) as blobs:
            for container in blobs.list_containers():
                client = blobs.get_container_client(container.name)
                for blob in client.list_blobs(include=["metadata"]):
                    data = client.download_blob(blob.name).readall()[:4_000_000]
                    where = f"blob {blobs.account_name}/{container.name}/{blob.name}"
                    evidence.add("record", where, json.dumps(blob.metadata) + "\n" + data.decode("latin-1"))


def collect_state(evidence: Evidence, rt: RuntimeProcess) -> None:
    evidence.add("log", str(rt.log_path), rt.log_text())
    for path in sorted(p for p in rt.state_dir.rglob("*") if p.is_file()):
        if path.name == "keys.json":
            continue  # the runtime's key store
        category = "log" if path.suffix == ".log" or "log" in path.parent.name else "state file"
        evidence.add(category, f"file {path}", path.read_bytes().decode("latin-1"))
        if path.suffix == ".sqlite3":
            collect_sqlite(evidence, path)


def collect_sqlite(evidence: Evidence, path: Path) -> None:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        for table in tables:
            cursor = db.execute(f"SELECT * FROM {table}")  # noqa: S608 - names from sqlite_master
            columns = [c[0] for c in cursor.description]
            for row in cursor:
                values = dict(zip(columns, row, strict=True))
                key = values.get("instance_id") or values.get("id")
                evidence.add("durable", f"{path.name} {table} {key}", json.dumps(values, default=str))
    finally:
        db.close()


def collect_mail(evidence: Evidence, box: Mailbox) -> None:
    with box.lock:
        received = list(box.received)
    for message, raw in received:
        parts = [raw.decode("latin-1")]
        parts += [str(part.get_content()) for part in message.walk() if part.get_content_maintype() == "text"]
        evidence.add("mail", f"mail to {message['To']}: {message['Subject']}", "\n".join(parts))


@pytest.fixture(scope="module")
def evidence(
    azurite: Azurite, fhir: FhirTestServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Evidence]:
    found = Evidence()
    box = Mailbox()
    smtp = Controller(box, hostname="127.0.0.1", port=free_port())
    smtp.start()
    tmp = tmp_path_factory.mktemp("leaks")
    clients = [{"client_id": "leak-client", "jwks": SMART_KEY.jwks(), "scopes": ["system/*.read"]}]
    settings = {"SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(smtp.port), "SMTP_SECURITY": "none",
                "MAIL_FROM": "bulk-export@example.org", "MAIL_ADMINS": ADMIN, "MAIL_RETRY_SCHEDULE": "1,1,1",
                "SMART_CLIENTS": json.dumps(clients)}  # fmt: skip
    servers = {
        "secured": FhirTestServer(COUNTS, required_token=SOURCE_TOKEN).start(),
        "paging": PagingTokenServer(COUNTS).start(),
        "paging, failing": PagingTokenServer(COUNTS).start(),
        "forbidding": FhirTestServer(COUNTS, required_token=SOURCE_TOKEN).start(),
        "failing": FhirTestServer(COUNTS, required_token=SOURCE_TOKEN).start(),
    }
    servers["forbidding"].faults.add(Fault("status", status=403, resource_type="Observation", times=None,
                                           diagnostics=f"Bearer {SOURCE_TOKEN} may not read Observation"))  # fmt: skip
    servers["failing"].faults.add(Fault("status", status=500, resource_type="Patient", times=None,
                                        diagnostics=f"internal error for Authorization: Bearer {SOURCE_TOKEN}"))  # fmt: skip
    servers["paging, failing"].faults.add(
        Fault("status", status=403, resource_type="Patient", page=3, times=None)
    )
    rt = start_service(azurite, fhir, tmp, **settings)
    calls = Calls(rt, found)
    try:
        found.secrets.update({
            "source token": SOURCE_TOKEN, "wrong source token": WRONG_TOKEN, "next-link token": PAGE_TOKEN,
            "WebDAV token": DAV_TOKEN, "destination AccountKey": LEAK_KEY, "service storage key": ACCOUNT_KEY,
            "master key": rt.master_key, "default function key": rt.function_key,
            **{f"system key {name}": value for name, value in rt.keys().get("systemKeys", {}).items()},
        })  # fmt: skip
        found.internal_paths = [str(ROOT), str(tmp)]
        run_exports(calls, azurite, servers)
        run_refused(calls, servers)
        run_batch(calls, azurite)
        run_front_door(calls, rt)
        run_key_calls(calls, rt)
        send_mail(calls, rt, box)
    finally:
        calls.close()
        rt.stop()
        smtp.stop()
        for server in servers.values():
            server.stop()
    folder = tmp / "secrets"
    for path in sorted(folder.iterdir()) if folder.exists() else ():
        if path.name.startswith("export-"):  # a job's secret (`shared.secrets.base.new_secret_name`)
            found.secrets_left.append(path.name)
        else:  # the service's own (the SMART signing key): searched for like the others
            found.secrets[f"secret store {path.name}"] = path.read_text()
    collect_state(found, rt)
    collect_storage(found, azurite)
    collect_mail(found, box)
    yield found


# --- the checks -------------------------------------------------------------------------------


def secret_hits(evidence: Evidence, category: str) -> list[Hit]:
    hits = []
    for label, value in evidence.secrets.items():
        wanted = needles(label, value)
        for place in (p for p in evidence.places if p.category == category):
            for hit in search(place, wanted):
                token_answer = place.where.startswith("POST ") and "/auth/token -> 200" in place.where
                if not (token_answer and label.startswith("SMART access token")):
                    hits.append(hit)
    return hits


def report(hits: list[Hit]) -> str:
    return f"{len(hits)} hit(s):\n" + "\n".join(str(h) for h in hits)


def test_the_scenarios_ran_as_intended(evidence: Evidence) -> None:
    assert evidence.states == {
        "ok, AccountKey": "succeeded",
        "ok, SAS, token in next links": "succeeded",
        "wrong token (401)": "failed",
        "403 echoing the token": "failed",
        "500 echoing the token": "failed",
        "unreachable source": "failed",
        "token in next links, 403": "failed",
        "token in next links, retried": "succeeded",
        "refused submissions": "400",
        "403, then retried": "succeeded",
        "batch, one item 403": "failed",
        "batch, retried": "succeeded",
        "front door export": "succeeded",
    }
    counts = {c: sum(1 for p in evidence.places if p.category == c) for c in CATEGORIES}
    print("read:", counts, "answers:", evidence.answers, "secrets:", sorted(evidence.secrets))
    assert all(counts[c] for c in ("answer", "record", "durable", "log", "mail")), counts
    assert any(label.startswith("SMART access token") for label in evidence.secrets)
    assert any(label.startswith("SMART client assertion") for label in evidence.secrets)


def test_every_secret_left_the_secret_store_when_its_job_ended(evidence: Evidence) -> None:
    assert evidence.secrets_left == []


@pytest.mark.parametrize("category", CATEGORIES)
def test_no_secret_is_readable(evidence: Evidence, category: str) -> None:
    hits = secret_hits(evidence, category)
    print(report(hits))
    assert not hits, report(hits)


@pytest.mark.parametrize("category", [c for c in CATEGORIES if c not in ("log", "state file")])
def test_no_internals_outside_the_log(evidence: Evidence, category: str) -> None:
    wanted: dict[str, str] = {}
    for text in (*INTERNALS, *evidence.internal_paths):
        wanted.update(needles(text, text, shortest=len(text)))
    hits = [hit for place in evidence.places if place.category == category for hit in search(place, wanted)]
    print(report(hits))
    assert not hits, report(hits)
