"""What the trust library reports to a service's metrics: timestamp requests, certificates.

A protocol rather than the kernel's `DomainMetrics` itself, so that this library needs nothing
of the kernel; `mutualis_kernel.metrics.DomainMetrics` has exactly these methods, and a service
passes its one instance (one per process: OpenTelemetry keeps the first callback registered
for an instrument name, so a second `DomainMetrics` would report no certificates).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol
from urllib.parse import urlsplit

#: The series of a tenant's agent certificates: one per tenant, holding the earliest expiry,
#: because a series per agent would be one per person (high cardinality, personal data).
AGENT_CERTIFICATES = "agents"


class TrustMetrics(Protocol):
    def timestamp_requested(self, tsa: str, ok: bool) -> None:
        """An RFC 3161 request to the TSA `tsa` (its host name) ended."""

    def signing_certificate(self, name: str, tenant: str, not_after: datetime) -> None:
        """The end of validity of a signing or seal certificate (`name`: never a person's)."""


def tsa_host(url: str) -> str:
    """The host name a timestamp request is counted under (no path, no credentials)."""
    return urlsplit(url).hostname or url
