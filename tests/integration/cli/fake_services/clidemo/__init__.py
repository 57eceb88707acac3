"""A stand-in service for the CLI tests: a real process with a real `/readyz`, nothing more.

No Mutualis service exists yet; this one lets the tests check what `mutualis up` does with
services (environment, ports, readiness, logs, stopping) without depending on one.
"""

from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources

MANIFEST = ServiceManifest(
    name="clidemo",
    description="Test stand-in service",
    default_port=8001,
    resources=Resources(),
)
