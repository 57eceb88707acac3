"""The dead-letter format, shared by consumers (which write it) and operators (who read it).

A dead letter is the original message (body and headers, minus JetStream's own control
headers) published on `dlq.<durable>` in the DEAD_LETTERS stream, with these headers added.
Replaying sends it to `replay.<durable>` in the REPLAYS stream, which only that durable
consumer reads, so other consumers of the original stream never see it twice.
"""

from __future__ import annotations

from collections.abc import Mapping

REASON = "Mutualis-Dead-Reason"
CONSUMER = "Mutualis-Dead-Consumer"
STREAM = "Mutualis-Dead-Stream"
SEQUENCE = "Mutualis-Dead-Sequence"
SUBJECT = "Mutualis-Dead-Subject"
DELIVERIES = "Mutualis-Dead-Deliveries"
TIME = "Mutualis-Dead-Time"
REPLAY_OF = "Mutualis-Replay-Of"

DEAD_LETTER_PREFIX = "dlq"
REPLAY_PREFIX = "replay"

#: Headers JetStream interprets on publish; copying them onto a dead letter or a replay would
#: make the server de-duplicate or reject it.
_CONTROL_HEADERS = frozenset(
    {
        "nats-msg-id",
        "nats-expected-stream",
        "nats-expected-last-msg-id",
        "nats-expected-last-sequence",
        "nats-expected-last-subject-sequence",
        "nats-expected-last-subject-sequence-subject",
        "nats-ttl",
        "nats-rollup",
    }
)


def dead_letter_subject(durable: str) -> str:
    return f"{DEAD_LETTER_PREFIX}.{durable}"


def replay_subject(durable: str) -> str:
    return f"{REPLAY_PREFIX}.{durable}"


def replay_durable(durable: str) -> str:
    """The consumer that reads `durable`'s replayed dead letters (named in its permissions)."""
    return f"{durable}-replay"


def carried_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """The original headers worth keeping, without JetStream control headers."""
    return {k: v for k, v in (headers or {}).items() if k.lower() not in _CONTROL_HEADERS}


def header_safe(text: str, limit: int = 1000) -> str:
    """Header values cannot hold line breaks; reasons are cut to a readable length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"
