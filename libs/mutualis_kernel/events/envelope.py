"""The CloudEvents 1.0 envelope, in the binary content mode of the NATS protocol binding.

Binary mode puts every context attribute in a `ce-` header and the event payload, as JSON, in
the message body. We chose it over structured mode because brokers, the CLI and dead-letter
tooling can read the type, tenant and ids without parsing the body, W3C trace context rides in
the standard `traceparent`/`tracestate` headers the OpenTelemetry propagators use, and the body
stays exactly the pydantic model's JSON.

Extensions: `ce-tenant` (the commune, also the subject's tenant token), `ce-correlationid`
(the user-visible journey), `ce-causationid` (the event that caused this one), `ce-datacenter`
(where it was produced). `Nats-Msg-Id` is always the event id, which makes publishing idempotent.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from pydantic import ValidationError

from mutualis_kernel.events.ids import new_event_id
from mutualis_kernel.events.registry import Event, EventCatalog, catalog
from mutualis_kernel.events.subjects import (
    NAME_TOKEN_PATTERN,
    PREFIX,
    TOKEN_PATTERN,
    InvalidSubject,
    Subject,
)

SPEC_VERSION = "1.0"
CONTENT_TYPE = "application/json"
MSG_ID_HEADER = "Nats-Msg-Id"
MAX_EVENT_BYTES = 256 * 1024

E = TypeVar("E", bound=Event)


class InvalidEvent(ValueError):
    """A message that cannot be an event of ours; `reason` says why, for the dead letter."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownEventType(InvalidEvent):
    pass


@dataclass(frozen=True)
class Envelope(Generic[E]):
    """An event with its context: who, where, when, for which tenant, in which journey."""

    data: E
    tenant: str
    aggregate_id: str
    id: str = field(default_factory=new_event_id)
    source: str = "/mutualis"
    time: datetime = field(default_factory=lambda: datetime.now(UTC))
    correlation_id: str | None = None
    causation_id: str | None = None
    datacenter: str | None = None
    trace_headers: Mapping[str, str] = field(default_factory=dict)
    #: Where JetStream stored it, once read back (None for an envelope not yet published).
    stream_sequence: int | None = None

    @property
    def type(self) -> str:
        return self.data.type_name()

    @property
    def subject(self) -> Subject:
        entity, action = self.data.event_name.split(".")
        return Subject(
            service=self.data.service,
            tenant=self.tenant,
            aggregate=self.data.aggregate,
            aggregate_id=self.aggregate_id,
            entity=entity,
            action=action,
        )

    @property
    def ce_subject(self) -> str:
        return f"{self.data.aggregate}/{self.aggregate_id}"


def encode(envelope: Envelope[Event]) -> tuple[str, dict[str, str], bytes]:
    """The NATS subject, headers and body of an envelope (binary content mode)."""
    data = envelope.data
    # The service, aggregate and event tokens were checked when the type was declared; only
    # the tenant and the aggregate id vary from one event to the next.
    if not _TENANT.match(envelope.tenant):
        raise InvalidSubject(f"tenant {envelope.tenant!r} is not a valid subject token")
    if not _AGGREGATE_ID.match(envelope.aggregate_id):
        raise InvalidSubject(f"aggregate id {envelope.aggregate_id!r} is not a valid subject token")
    subject = (
        f"{PREFIX}.{data.service}.{envelope.tenant}.{data.aggregate}."
        f"{envelope.aggregate_id}.{data.event_name}"
    )
    headers = {
        "ce-specversion": SPEC_VERSION,
        "ce-id": envelope.id,
        "ce-source": envelope.source,
        "ce-type": envelope.type,
        "ce-subject": envelope.ce_subject,
        "ce-time": envelope.time.isoformat(),
        "ce-tenant": envelope.tenant,
        "content-type": CONTENT_TYPE,
        MSG_ID_HEADER: envelope.id,
    }
    if envelope.correlation_id:
        headers["ce-correlationid"] = envelope.correlation_id
    if envelope.causation_id:
        headers["ce-causationid"] = envelope.causation_id
    if envelope.datacenter:
        headers["ce-datacenter"] = envelope.datacenter
    headers.update(envelope.trace_headers)
    body = envelope.data.model_dump_json().encode()
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event body is {len(body)} bytes, over {MAX_EVENT_BYTES}")
    return subject, headers, body


_AGGREGATE_ID = TOKEN_PATTERN
_TENANT = NAME_TOKEN_PATTERN
_REQUIRED = ("ce-specversion", "ce-id", "ce-source", "ce-type", "ce-tenant", "ce-time")
_TRACE_HEADERS = ("traceparent", "tracestate", "baggage")


def decode(
    subject: str,
    headers: Mapping[str, str] | None,
    body: bytes,
    known: EventCatalog = catalog,
    stream_sequence: int | None = None,
) -> Envelope[Event]:
    """Rebuild and validate an envelope; raise `InvalidEvent` with a reason, never half-decode."""
    headers = headers or {}
    missing = [name for name in _REQUIRED if not headers.get(name)]
    if missing:
        raise InvalidEvent(f"missing CloudEvents attributes: {', '.join(missing)}")
    if headers["ce-specversion"] != SPEC_VERSION:
        raise InvalidEvent(f"unsupported specversion {headers['ce-specversion']!r}")
    content_type = headers.get("content-type", CONTENT_TYPE)
    if content_type.split(";")[0].strip() != CONTENT_TYPE:
        raise InvalidEvent(f"unsupported content-type {content_type!r}")
    if len(body) > MAX_EVENT_BYTES:
        raise InvalidEvent(f"event body is {len(body)} bytes, over {MAX_EVENT_BYTES}")
    type_name = headers["ce-type"]
    model = known.model_for(type_name)
    if model is None:
        raise UnknownEventType(f"unknown event type {type_name!r}")
    tokens = Subject.split(subject)
    if tokens is None:
        raise InvalidEvent(f"subject {subject!r} is not an event subject")
    service, subject_tenant, aggregate, aggregate_id, entity, action = tokens
    tenant = headers["ce-tenant"]
    if subject_tenant != tenant:
        raise InvalidEvent(f"tenant {tenant!r} does not match subject tenant {subject_tenant!r}")
    if (service, f"{entity}.{action}", aggregate) != (
        model.service,
        model.event_name,
        model.aggregate,
    ):
        raise InvalidEvent(f"subject {subject!r} does not carry a {type_name} event")
    if not _AGGREGATE_ID.match(aggregate_id):
        raise InvalidEvent(f"aggregate id {aggregate_id!r} is not a valid subject token")
    try:
        time = datetime.fromisoformat(headers["ce-time"])
    except ValueError:
        raise InvalidEvent(f"ce-time {headers['ce-time']!r} is not RFC 3339") from None
    try:
        data = model.model_validate_json(body)
    except ValidationError as error:
        raise InvalidEvent(f"{type_name} payload invalid: {_summarise(error)}") from None
    return Envelope(
        data=data,
        tenant=tenant,
        aggregate_id=aggregate_id,
        id=headers["ce-id"],
        source=headers["ce-source"],
        time=time,
        correlation_id=headers.get("ce-correlationid"),
        causation_id=headers.get("ce-causationid"),
        datacenter=headers.get("ce-datacenter"),
        trace_headers={k: headers[k] for k in _TRACE_HEADERS if k in headers},
        stream_sequence=stream_sequence,
    )


def _summarise(error: ValidationError) -> str:
    parts = []
    for item in error.errors()[:5]:
        location = ".".join(str(p) for p in item["loc"]) or "<body>"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)
