"""Pick the `Source` implementation for a request's source spec, and the process-wide HTTP client.

`make_source` is keyed on `spec.kind`; it receives its dependencies (the shared client, the
already-resolved secret) instead of building them, so activities stay thin and tests pass fakes.
"""

from __future__ import annotations

from collections.abc import Sequence

import httpx

from shared.errors import ValidationError
from shared.outbound import OutboundPolicy, guarded_transport
from shared.sources.base import Source, SourceSpec
from shared.sources.fhir import FhirSource

__all__ = ["SOURCE_KINDS", "make_source", "make_http_client"]

SOURCE_KINDS = ("fhir",)

# Why these numbers: connecting should be quick or the server is down (retry soon); a FHIR search
# page of thousands of resources can take a server tens of seconds to assemble.
_TIMEOUT = httpx.Timeout(connect=10.0, read=120.0, write=30.0, pool=30.0)
_LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=16)


def make_http_client(policy: OutboundPolicy) -> httpx.Client:
    """The `httpx.Client` every outbound call of a job goes through (built once per process, in
    `shared.deps`, so its connection pool is reused across activity calls).

    It connects only where the outbound policy allows. Redirects are not followed: a FHIR search
    never needs one, and following one could carry the bearer token to another host.
    """
    transport = guarded_transport(policy, limits=_LIMITS)
    return httpx.Client(timeout=_TIMEOUT, transport=transport, follow_redirects=False)


def make_source(
    spec: SourceSpec,
    http_client: httpx.Client,
    secret_value: str | None,
    patients: Sequence[str] | None = None,
) -> Source:
    """The source described by `spec`; `secret_value` is its bearer token (None: no auth);
    `patients` the ids a patient-restricted spec (`spec.patient_params`) is restricted to."""
    if spec.kind == "fhir":
        return FhirSource(
            http_client,
            spec.base_url,
            types=tuple(spec.types),
            since=spec.since,
            type_filters=tuple(spec.type_filters),
            page_size=spec.page_size,
            elements=tuple(spec.elements),
            patient_params=dict(spec.patient_params) or None,
            patients=patients,
            bearer_token=secret_value,
        )
    raise ValidationError("kind", f"unknown source kind {spec.kind!r} (known: {', '.join(SOURCE_KINDS)})")
