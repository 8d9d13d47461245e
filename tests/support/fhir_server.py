"""A real FHIR R4 search server on 127.0.0.1 for tests and benchmarks, with injectable faults.

    with FhirTestServer(counts={"Patient": 1000, "Observation": 5000}) as srv:
        srv.base_url                       # http://127.0.0.1:<port>/fhir
        srv.faults.add(Fault("status", status=503, retry_after="2", times=2))
        srv.expected_ids(since="2024-06-01T00:00:00Z")   # what an export must produce

Serves `GET /fhir/metadata`, `GET /fhir/{Type}?_count=&_lastUpdated=&<token params>&ct=` (searchset
Bundles, ordered by id, absolute `next` links with an opaque `ct` cursor) and `GET /fhir/{Type}/{id}`.
Optional `groups` (id -> member patient ids; `add_group` adds more) are served as
`GET /fhir/Group/{id}`; searches honour `_id=<ids>` and `patient=<ids or Patient/ids>` (comma
lists, looked up by index, so a 10,000-member group exports in chunks quickly), token parameters
such as `gender=male,female`, and `_elements=a,b` (only those top-level elements, plus id and
meta; tagged SUBSETTED only with `tag_subsetted`; `elements_supported=False` leaves `_elements`
out of the CapabilityStatement and ignores it, as a server without the feature would).
Resources come from `FhirDataset`, computed from their index, so 200,000 of them cost no memory.
Unknown search parameters are ignored with an `outcome` entry, as lenient real servers do
(`Prefer: handling=strict` makes them a 400).
Faults to inject (`Fault`, `FaultSet`) are in `tests.support.fhir_faults`, re-exported here.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
import logging
import socket
import threading
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from tests.support.fhir_data import SEARCH_PARAMS, Criteria, FhirDataset, LastUpdatedFilter, format_instant
from tests.support.fhir_faults import (
    ArmedFault,
    BrokenKind,
    Fault,
    FaultKind,
    FaultSet,
    FhirRequest,
    break_page,
)
from tests.support.ports import free_port

__all__ = [
    "ArmedFault",
    "BrokenKind",
    "Fault",
    "FaultKind",
    "FaultSet",
    "FhirRequest",
    "FhirTestServer",
    "decode_cursor",
    "encode_cursor",
    "main",
]

log = logging.getLogger(__name__)

DEFAULT_COUNT = 50
_CONTROL_PARAMS = frozenset({"_count", "_lastUpdated", "ct", "_elements"})
_SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
# Member restrictions (any type): `_id` on the resource's id, `patient` on its subject reference.
_MEMBER_PARAMS = frozenset({"_id", "patient"})


class _BadRequest(Exception):
    def __init__(self, status: int, diagnostics: str) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.diagnostics = diagnostics


def _outcome(diagnostics: str, code: str = "processing", severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def _issue_code(status: int) -> str:
    """The OperationOutcome issue code (FHIR IssueType) a real server would use for `status`."""
    codes = {401: "login", 403: "forbidden", 404: "not-found", 429: "throttled", 400: "invalid"}
    return codes.get(status, "transient" if status >= 500 else "processing")


def encode_cursor(offset: int, page: int) -> str:
    return base64.urlsafe_b64encode(f"{offset}:{page}".encode()).decode().rstrip("=")


def decode_cursor(value: str) -> tuple[int, int]:
    try:
        offset, page = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode().split(":")
        return int(offset), int(page)
    except ValueError:
        raise _BadRequest(400, "invalid continuation token") from None


class FhirTestServer:
    """The server; a context manager that starts it on a free loopback port and stops it."""

    def __init__(
        self,
        counts: Mapping[str, int],
        *,
        resource_bytes: int | None = None,
        max_count: int = 10_000,
        required_token: str | None = None,
        port: int | None = None,
        base_path: str = "/fhir",
        groups: Mapping[str, Sequence[str]] | None = None,
        elements_supported: bool = True,
        tag_subsetted: bool = False,
    ) -> None:
        self.dataset = FhirDataset(dict(counts), resource_bytes)
        self.groups = {group_id: tuple(members) for group_id, members in (groups or {}).items()}
        self.elements_supported = elements_supported
        self.tag_subsetted = tag_subsetted
        self.max_count = max_count
        self.required_token = required_token
        self.port = port or free_port()
        self.base_path = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.faults = FaultSet()
        self.requests: deque[FhirRequest] = deque(maxlen=10_000)
        self._served = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.base_path}"

    def start(self) -> FhirTestServer:
        self._stopping.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self.port), _Handler, self)
        # A short poll interval makes stop() quick (shutdown waits for the loop's next poll).
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name=f"fhir-test-server-{self.port}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # releases "slow" faults
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.close_open_connections()
            self._httpd.server_close()  # joins the handler threads
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FhirTestServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def add_group(self, group_id: str, members: Sequence[str]) -> None:
        """Serve one more Group (member patient ids)."""
        self.groups[group_id] = tuple(members)

    def patient_ids(self, first: int, count: int) -> list[str]:
        """Ids of `count` patients from index `first` (a Group's members, say)."""
        return [self.dataset.resource_id("Patient", i) for i in range(first, first + count)]

    # -- observation ---------------------------------------------------------------------------

    @property
    def requests_served(self) -> int:
        with self._lock:
            return self._served

    def expected_ids(
        self, types: Sequence[str] | None = None, since: str | None = None, type_filters: Sequence[str] = ()
    ) -> dict[str, Iterator[str]]:
        """type -> ids an export of these types since `since` (exclusive) must contain, lazily."""
        return self.dataset.expected_ids(types, since, type_filters)

    def expected_member_ids(
        self, patients: Sequence[str], types: Sequence[str], since: str | None = None
    ) -> dict[str, Iterator[str]]:
        """type -> ids a Group export of these patients must contain (Patient by id, others by subject)."""
        criteria = Criteria.from_since(since)
        wanted = set(patients)

        def ids(resource_type: str) -> Iterator[str]:
            for index in range(self.dataset.count(resource_type)):
                resource_id = self.dataset.resource_id(resource_type, index)
                patient = (
                    resource_id
                    if resource_type == "Patient"
                    else self.dataset.subject_id(resource_type, index)
                )
                if patient in wanted and self.dataset.matches(resource_type, index, criteria):
                    yield resource_id

        return {resource_type: ids(resource_type) for resource_type in types}

    def _selects(
        self, resource_type: str, index: int, criteria: Criteria, members: Sequence[tuple[str, str]]
    ) -> bool:
        """`criteria` and every member restriction (`_id` / `patient`, comma lists) hold."""
        if not self.dataset.matches(resource_type, index, criteria):
            return False
        for name, value in members:
            wanted = {item.strip().removeprefix("Patient/") for item in value.split(",")}
            if name == "_id":
                actual: str | None = self.dataset.resource_id(resource_type, index)
            else:
                actual = self.dataset.subject_id(resource_type, index)
            if actual not in wanted:
                return False
        return True

    def _candidates(self, resource_type: str, members: Sequence[tuple[str, str]]) -> Sequence[int]:
        """Ascending indexes that can pass the member restrictions (all of them without any):
        computed from the ids, so a chunk of 200 patients does not scan every resource."""
        total = self.dataset.count(resource_type)
        if not members:
            return range(total)
        patients = max(1, self.dataset.count("Patient"))
        found: set[int] | None = None
        for name, value in members:
            indexes: set[int] = set()
            for item in value.split(","):
                wanted = item.strip().removeprefix("Patient/")
                if name == "_id":
                    index = self.dataset.index_of(resource_type, wanted)
                    indexes.update(() if index is None else (index,))
                elif self.dataset.subject_id(resource_type, 0) is not None:
                    patient = self.dataset.index_of("Patient", wanted)
                    if patient is not None:
                        indexes.update(range(patient, total, patients))
            found = indexes if found is None else found & indexes
        return sorted(found or ())

    # -- request handling (called on handler threads) -----------------------------------------

    def _record(self, request: FhirRequest) -> None:
        with self._lock:
            self._served += 1
            self.requests.append(request)

    def _describe(self, handler: _Handler) -> tuple[FhirRequest, list[str] | None]:
        """The request record, and the path segments under the base path (None: outside it)."""
        parts = urlsplit(handler.path)
        params = tuple(parse_qsl(parts.query, keep_blank_values=True))
        segments = None
        if parts.path == self.base_path or parts.path.startswith(self.base_path + "/"):
            segments = [s for s in parts.path[len(self.base_path) :].split("/") if s]
        is_search = segments is not None and len(segments) == 1 and segments[0] != "metadata"
        page = None
        if is_search:
            cursor = dict(params).get("ct")
            try:
                page = decode_cursor(cursor)[1] if cursor else 1
            except _BadRequest:
                page = None  # answered with a 400 below
        resource_type = segments[0] if segments and segments[0] != "metadata" else None
        request = FhirRequest(
            "GET", parts.path, params, resource_type, page, handler.headers.get("Authorization")
        )
        return request, segments

    def handle(self, handler: _Handler) -> None:
        request, segments = self._describe(handler)
        params = request.params
        self._record(request)
        fault = self.faults.take(request)
        if fault is not None and fault.kind == "slow":
            self._stopping.wait(fault.delay_s)
            fault = None
        if fault is not None and fault.kind in ("status", "drop"):
            self._inject(handler, fault, b"")
            return
        try:
            if self.required_token is not None and request.authorization != f"Bearer {self.required_token}":
                raise _BadRequest(401, "missing or invalid bearer token")
            if not segments:
                raise _BadRequest(404, f"no route for {request.path}")
            if segments == ["metadata"]:
                body = self._capability_statement()
            elif len(segments) == 1:
                strict = "handling=strict" in (handler.headers.get("Prefer") or "")
                body = self._search(segments[0], params, strict)
            elif len(segments) == 2:
                body = self._read(segments[0], segments[1])
            else:
                raise _BadRequest(404, f"no route for {request.path}")
        except _BadRequest as exc:
            handler.send_json(exc.status, _outcome(exc.diagnostics))
            return
        if fault is not None:
            self._inject(handler, fault, body)
            return
        handler.send_body(200, json.dumps(body, separators=(",", ":")).encode())

    def _inject(self, handler: _Handler, fault: Fault, body: Any) -> None:
        if fault.kind == "status":
            headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            handler.send_json(
                fault.status, _outcome(fault.diagnostics, code=_issue_code(fault.status)), headers
            )
        elif fault.kind == "drop":
            handler.drop()
        elif fault.kind == "truncate":
            data = json.dumps(body, separators=(",", ":")).encode()
            handler.send_body(200, data, cut_at=len(data) // 2)
        elif fault.kind == "broken":
            handler.send_body(200, break_page(body, fault.broken))

    def _capability_statement(self) -> dict[str, Any]:
        return {
            "resourceType": "CapabilityStatement",
            "status": "active",
            "date": "2024-01-01",
            "kind": "instance",
            "fhirVersion": "4.0.1",
            "format": ["json"],
            "rest": [
                {
                    "mode": "server",
                    "resource": [
                        *(
                            {
                                "type": t,
                                "interaction": [{"code": "read"}, {"code": "search-type"}],
                                "searchParam": self._search_params(t),
                            }
                            for t in self.dataset.types
                        ),
                        *([{"type": "Group", "interaction": [{"code": "read"}]}] if self.groups else []),
                    ],
                }
            ],
        }

    def _search_params(self, resource_type: str) -> list[dict[str, str]]:
        names = [("_lastUpdated", "date"), ("_id", "token")]
        names += [(name, "token") for name in SEARCH_PARAMS.get(resource_type, {})]
        if self.dataset.subject_id(resource_type, 0) is not None:
            names.append(("patient", "reference"))
        if self.elements_supported:
            names.append(("_elements", "special"))
        return [{"name": name, "type": kind} for name, kind in names]

    def _read(self, resource_type: str, resource_id: str) -> dict[str, Any]:
        if resource_type == "Group" and resource_id in self.groups:
            members = [{"entity": {"reference": f"Patient/{m}"}} for m in self.groups[resource_id]]
            return {
                "resourceType": "Group",
                "id": resource_id,
                "type": "person",
                "actual": True,
                "member": members,
            }
        index = self.dataset.index_of(resource_type, resource_id)
        if index is None:
            raise _BadRequest(404, f"{resource_type}/{resource_id} not found")
        return self.dataset.resource(resource_type, index)

    def _search(
        self, resource_type: str, params: tuple[tuple[str, str], ...], strict: bool
    ) -> dict[str, Any]:
        if resource_type not in self.dataset.counts:
            raise _BadRequest(404, f"unknown resource type {resource_type}")
        try:
            count = int(dict(params).get("_count", DEFAULT_COUNT))
            clauses = tuple(LastUpdatedFilter.parse(v) for k, v in params if k == "_lastUpdated")
        except ValueError as exc:
            raise _BadRequest(400, f"invalid search parameter: {exc}") from None
        if count < 1:
            raise _BadRequest(400, "_count must be positive")
        count = min(count, self.max_count)
        known = set(SEARCH_PARAMS.get(resource_type, {}))
        members = tuple((k, v) for k, v in params if k in _MEMBER_PARAMS)
        control = _CONTROL_PARAMS if self.elements_supported else _CONTROL_PARAMS - {"_elements"}
        unknown = sorted({k for k, _ in params if k not in control | _MEMBER_PARAMS and k not in known})
        if unknown and strict:
            raise _BadRequest(400, f"unknown search parameter(s): {', '.join(unknown)}")
        criteria = Criteria(clauses, tuple((k, v) for k, v in params if k in known))
        offset, page = decode_cursor(dict(params)["ct"]) if "ct" in dict(params) else (0, 1)

        candidates = self._candidates(resource_type, members)
        position, matched = bisect.bisect_left(candidates, offset), list[int]()
        while position < len(candidates) and len(matched) < count:
            if self._selects(resource_type, candidates[position], criteria, members):
                matched.append(candidates[position])
            position += 1
        # Look ahead so the last page has no next link (no trailing empty page).
        while position < len(candidates) and not self._selects(
            resource_type, candidates[position], criteria, members
        ):
            position += 1
        elements = [e for v in (v for k, v in params if k == "_elements") for e in v.split(",") if e]
        entries: list[dict[str, Any]] = [
            {
                "fullUrl": f"{self.base_url}/{resource_type}/{self.dataset.resource_id(resource_type, i)}",
                "resource": self._subset(self.dataset.resource(resource_type, i), elements),
                "search": {"mode": "match"},
            }
            for i in matched
        ]
        if unknown:
            entries.append(
                {
                    "resource": _outcome(
                        f"parameter(s) ignored: {', '.join(unknown)}", "not-supported", "warning"
                    ),
                    "search": {"mode": "outcome"},
                }
            )
        kept = [(k, v) for k, v in params if k != "ct"]
        links = [{"relation": "self", "url": f"{self.base_url}/{resource_type}?{urlencode(params)}"}]
        if position < len(candidates):
            query = urlencode([*kept, ("ct", encode_cursor(candidates[position], page + 1))])
            links.append({"relation": "next", "url": f"{self.base_url}/{resource_type}?{query}"})
        return {
            "resourceType": "Bundle",
            "type": "searchset",
            "meta": {"lastUpdated": format_instant(datetime.now(UTC))},
            "link": links,
            "entry": entries,
        }

    def _subset(self, resource: dict[str, Any], elements: Sequence[str]) -> dict[str, Any]:
        """`_elements`: the listed top-level elements and the mandatory ones (ignored when the
        server does not support it)."""
        if not elements or not self.elements_supported:
            return resource
        kept = {k: v for k, v in resource.items() if k in {"resourceType", "id", "meta", *elements}}
        if self.tag_subsetted:
            kept["meta"] = {**kept.get("meta", {}), "tag": [dict(_SUBSETTED)]}
        return kept


class _HTTPServer(ThreadingHTTPServer):
    # Join handler threads on close so a stopped server leaves nothing running.
    daemon_threads = False
    block_on_close = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], app: FhirTestServer) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Named after the port so tests can tell this server's threads from another's.
        threading.current_thread().name = f"fhir-test-server-{self.server_address[1]}-conn"
        super().process_request_thread(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_open_connections(self) -> None:
        """Idle keep-alive connections would keep their threads reading forever; end them."""
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):  # already closed by the peer
                sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients that time out or drop mid-response are expected in fault tests.
        log.debug("fhir test server: error serving %s", client_address, exc_info=True)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers and httpx's pool expect
    timeout = 30  # an idle keep-alive connection frees its thread after this
    # Headers and body go out as two writes; with Nagle on, the client's delayed ACK adds ~40 ms
    # to every response.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def do_GET(self) -> None:  # noqa: N802 - the stdlib's naming
        self.server.app.handle(self)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("fhir test server: " + format, *args)

    def send_json(self, status: int, document: Any, headers: Mapping[str, str] | None = None) -> None:
        self.send_body(status, json.dumps(document).encode(), headers=headers)

    def send_body(
        self, status: int, data: bytes, headers: Mapping[str, str] | None = None, cut_at: int | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/fhir+json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if cut_at is None:
            self.wfile.write(data)
            return
        self.wfile.write(data[:cut_at])
        self.drop()

    def drop(self) -> None:
        """End the connection without (the rest of) a response."""
        self.close_connection = True
        with contextlib.suppress(OSError):  # the client went first
            self.connection.shutdown(socket.SHUT_RDWR)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m tests.support.fhir_server`: a demo FHIR source for `make run` (127.0.0.1 only)."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="Serve generated FHIR R4 resources as searchset Bundles.")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--counts", default="Patient=2000,Observation=1000,Encounter=300,Condition=150",
                        help="Type=count pairs, comma separated")  # fmt: skip
    parser.add_argument("--groups", default="small=10,cohort=100,all-2000=2000",
                        help="Group=size pairs: Group/<name> holds the first <size> patients")  # fmt: skip
    parser.add_argument(
        "--resource-bytes", type=int, default=None, help="pad each resource to about this size"
    )
    args = parser.parse_args(argv)
    counts = {t: int(n) for t, n in (pair.split("=", 1) for pair in args.counts.split(",") if pair)}
    server = FhirTestServer(counts, port=args.port, resource_bytes=args.resource_bytes)
    for name, size in (pair.split("=", 1) for pair in args.groups.split(",") if pair):
        server.add_group(name, server.patient_ids(0, min(int(size), counts.get("Patient", 0))))
    server.start()
    groups = ", ".join(f"Group/{g} ({len(m)})" for g, m in server.groups.items())
    print(f"FHIR test server on {server.base_url} serving {counts} and {groups}; Ctrl-C stops it", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        stop.wait()
    server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
