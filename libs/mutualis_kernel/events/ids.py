"""Event identifiers: time-ordered UUIDv7 for new events, UUIDv5 for derived ones.

A handler that reacts to an event gives its own resulting event an id derived from the cause,
so a redelivered cause yields the same id and JetStream's de-duplication drops the repeat.
"""

from __future__ import annotations

import os
import time
import uuid

_NAMESPACE = uuid.UUID("6f2d9b57-6b7e-4b55-9c53-5b8d2b1f7a11")


def new_event_id() -> str:
    """A UUIDv7 (RFC 9562): unique, and sortable by creation time."""
    millis = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (millis & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    # What str(uuid.UUID(int=value)) gives, without building the UUID (one per event).
    digits = f"{value:032x}"
    return f"{digits[:8]}-{digits[8:12]}-{digits[12:16]}-{digits[16:20]}-{digits[20:]}"


def derived_event_id(cause_id: str, purpose: str) -> str:
    """The same id every time the same cause is handled for the same purpose."""
    return str(uuid.uuid5(_NAMESPACE, f"{cause_id}/{purpose}"))
