"""What a service declares about itself, for the CLI, the runtime and the AsyncAPI document.

Each service package exposes `MANIFEST` in `<service>/manifest.py`: cheap to import (no I/O,
no adapters), so tooling can list every service's resources, consumers and events.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.streams import Resources

#: Every service the platform knows, in start order, with its default HTTP port.
KNOWN_SERVICES: dict[str, int] = {
    "identity": 8001,
    "parapheur": 8002,
    "archive": 8003,
    "notifications": 8004,
}


@dataclass(frozen=True)
class ServiceManifest:
    name: str
    description: str
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

    def load_events(self) -> None:
        for module in self.event_modules:
            importlib.import_module(module)


def installed_manifests() -> list[ServiceManifest]:
    """The manifests of the services present in this installation, in start order."""
    found = []
    for name in KNOWN_SERVICES:
        try:
            module = importlib.import_module(f"{name}.manifest")
        except ModuleNotFoundError as error:
            if error.name in (name, f"{name}.manifest"):
                continue
            raise
        manifest: ServiceManifest = module.MANIFEST
        manifest.load_events()
        found.append(manifest)
    return found
