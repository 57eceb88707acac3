"""Demo event types for the kernel's tests and benchmarks, in a catalog of their own.

They live in `demo_catalog`, never in the process-wide catalog, so they cannot leak into the
AsyncAPI document or be decoded by a real service.
"""

from mutualis_kernel.events import EventCatalog, domain_event
from mutualis_kernel.events.registry import Event

demo_catalog = EventCatalog()


@domain_event("demo", "parcel.registered", aggregate="parcel", into=demo_catalog)
class ParcelRegistered(Event):
    """A parcel entered the demo system."""

    reference: str
    weight_kg: float


@domain_event("demo", "parcel.shipped", aggregate="parcel", into=demo_catalog)
class ParcelShipped(Event):
    """A parcel left."""

    carrier: str


@domain_event("demo", "label.printed", aggregate="label", into=demo_catalog)
class LabelPrinted(Event):
    """The effect of handling ParcelRegistered: what 'exactly one effect' counts."""

    parcel_id: str
