"""The event contract: typed events, the CloudEvents envelope and the subject scheme.

Pure: nothing here performs I/O, so service domains may import it.
"""

from mutualis_kernel.events.envelope import (
    Envelope,
    InvalidEvent,
    UnknownEventType,
    decode,
    encode,
)
from mutualis_kernel.events.ids import derived_event_id, new_event_id
from mutualis_kernel.events.registry import (
    Event,
    EventCatalog,
    catalog,
    domain_event,
)
from mutualis_kernel.events.subjects import Subject, SubjectFilter

__all__ = [
    "Envelope",
    "Event",
    "EventCatalog",
    "InvalidEvent",
    "Subject",
    "SubjectFilter",
    "UnknownEventType",
    "catalog",
    "decode",
    "derived_event_id",
    "domain_event",
    "encode",
    "new_event_id",
]
