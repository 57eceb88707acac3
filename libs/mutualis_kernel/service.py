"""What a service declares about itself, for the CLI, the runtime and the AsyncAPI document.

Each service package exposes `MANIFEST` in `<service>/manifest.py`: cheap to import (no I/O,
no adapters), so tooling can list every service's resources, consumers and events. The kernel
knows no service by name: a distribution declares its services as entry points of the group
`mutualis.services` (`name = "package.manifest:MANIFEST"`, see pyproject.toml), and
`installed_manifests` finds whatever is installed.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points

from mutualis_kernel.audit import AuditRule
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.streams import Resources

#: The entry-point group naming each installed service's manifest.
SERVICES_GROUP = "mutualis.services"


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    description: str
    #: Its HTTP port when nothing else is said; services start in the order of these ports.
    default_port: int
    resources: Resources
    consumers: tuple[ConsumerSpec, ...] = ()
    #: Modules whose import registers the service's event types in the catalog.
    event_modules: tuple[str, ...] = ()
    #: Streams the service creates itself (settings the declarative specs do not cover, such
    #: as message schedules): it gets the same JetStream API rights as on its declared ones.
    private_streams: tuple[str, ...] = ()
    #: Subjects outside `evt.<service>.>` it publishes to (its private streams' subjects).
    private_subjects: tuple[str, ...] = ()
    #: Other services' object stores it reads (never writes), e.g. archive reading the signed
    #: PDFs parapheur stored: read-only JetStream rights on them.
    reads_object_stores: tuple[str, ...] = ()
    #: Its security-relevant event types, as the audit trail (`mutualis audit`) lists them.
    audited: tuple[AuditRule, ...] = ()

    def load_events(self) -> None:
        for module in self.event_modules:
            importlib.import_module(module)


def installed_manifests() -> list[ServiceManifest]:
    """The manifests of the services installed here, in start order (their default ports)."""
    found = []
    for entry in entry_points(group=SERVICES_GROUP):
        manifest = entry.load()
        if not isinstance(manifest, ServiceManifest):
            raise TypeError(f"entry point {entry.name} = {entry.value} is not a ServiceManifest")
        manifest.load_events()
        found.append(manifest)
    return sorted(found, key=lambda manifest: manifest.default_port)


def installed_service_names() -> list[str]:
    """The names of the services installed here, in start order."""
    return [manifest.name for manifest in installed_manifests()]


def default_ports() -> dict[str, int]:
    """Each installed service's default HTTP port, by name, in start order."""
    return {manifest.name: manifest.default_port for manifest in installed_manifests()}
