"""The CloudEvents envelope: what goes on the wire, and what is refused when it comes back."""

import string
import uuid
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mutualis_kernel.events import (
    Envelope,
    InvalidEvent,
    Subject,
    SubjectFilter,
    UnknownEventType,
    decode,
    derived_event_id,
    encode,
    new_event_id,
)
from mutualis_kernel.events.subjects import InvalidSubject
from mutualis_kernel.testing.demo_events import ParcelRegistered, demo_catalog


def an_envelope(**overrides: object) -> Envelope[ParcelRegistered]:
    values: dict[str, object] = {
        "data": ParcelRegistered(reference="R-1", weight_kg=1.5),
        "tenant": "bordeaux",
        "aggregate_id": "parcel-1",
        "correlation_id": "journey",
        "causation_id": "cause",
        "datacenter": "dc2",
    }
    values.update(overrides)
    return Envelope(**values)  # type: ignore[arg-type]


def test_binary_mode_puts_every_attribute_in_a_header_and_the_payload_in_the_body() -> None:
    subject, headers, body = encode(an_envelope())

    assert subject == "evt.demo.bordeaux.parcel.parcel-1.parcel.registered"
    assert headers["ce-specversion"] == "1.0"
    assert headers["ce-type"] == "mutualis.demo.parcel.registered.v1"
    assert headers["ce-tenant"] == "bordeaux"
    assert headers["ce-correlationid"] == "journey"
    assert headers["ce-causationid"] == "cause"
    assert headers["ce-datacenter"] == "dc2"
    assert headers["Nats-Msg-Id"] == headers["ce-id"]
    assert body == b'{"reference":"R-1","weight_kg":1.5}'


def test_an_encoded_envelope_decodes_to_an_equal_one() -> None:
    original = an_envelope()
    decoded = decode(*encode(original), known=demo_catalog)

    assert decoded.data == original.data
    assert decoded.id == original.id
    assert decoded.tenant == original.tenant
    assert decoded.aggregate_id == original.aggregate_id
    assert decoded.time == original.time
    assert decoded.correlation_id == "journey"


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda s, h, b: (s, {k: v for k, v in h.items() if k != "ce-id"}, b), "missing"),
        (lambda s, h, b: (s, {**h, "ce-specversion": "0.3"}, b), "specversion"),
        (lambda s, h, b: (s, {**h, "ce-type": "mutualis.demo.x.y.v9"}, b), "unknown event type"),
        (lambda s, h, b: (s, {**h, "ce-tenant": "pessac"}, b), "does not match subject"),
        (lambda s, h, b: (s, {**h, "content-type": "text/xml"}, b), "content-type"),
        (lambda s, h, b: (s, {**h, "ce-time": "yesterday"}, b), "RFC 3339"),
        (lambda s, h, b: (s, h, b"{not json"), "payload invalid"),
        (lambda s, h, b: (s, h, b'{"reference":"R","weight_kg":1,"extra":1}'), "payload invalid"),
        (lambda s, h, b: ("evt.demo.bordeaux.label.x.label.printed", h, b), "does not carry"),
        (lambda s, h, b: ("orders.created", h, b), "not an event subject"),
        (lambda s, h, b: (s, h, b" " * 300_000), "over"),
    ],
)
def test_a_bad_message_is_refused_with_a_reason(mutate: object, reason: str) -> None:
    subject, headers, body = mutate(*encode(an_envelope()))  # type: ignore[operator]
    with pytest.raises(InvalidEvent) as refused:
        decode(subject, headers, body, known=demo_catalog)
    assert reason in refused.value.reason


def test_an_unknown_type_is_its_own_error() -> None:
    subject, headers, body = encode(an_envelope())
    with pytest.raises(UnknownEventType):
        decode(
            subject,
            {**headers, "ce-type": "mutualis.other.thing.done.v1"},
            body,
            known=demo_catalog,
        )


header_values = st.text(alphabet=string.printable, max_size=40)
hostile_headers = st.dictionaries(
    st.sampled_from(
        ["ce-specversion", "ce-id", "ce-source", "ce-type", "ce-tenant", "ce-time", "content-type"]
    ),
    header_values,
)


@settings(max_examples=300, deadline=None)
@given(
    subject=st.one_of(
        st.just("evt.demo.bordeaux.parcel.p1.parcel.registered"),
        st.text(alphabet=string.ascii_lowercase + ".*>-", max_size=60),
    ),
    headers=st.one_of(st.none(), hostile_headers),
    body=st.one_of(st.binary(max_size=200), st.just(b'{"reference":"R","weight_kg":1}')),
    keep_valid_headers=st.booleans(),
)
def test_decoding_a_hostile_message_either_succeeds_or_says_why(
    subject: str, headers: dict[str, str] | None, body: bytes, keep_valid_headers: bool
) -> None:
    if keep_valid_headers:
        _, valid, _ = encode(an_envelope(aggregate_id="p1"))
        headers = {**valid, **(headers or {})}
    try:
        envelope = decode(subject, headers, body, known=demo_catalog)
    except InvalidEvent as error:
        assert error.reason  # noqa: PT017 - any outcome but a crash is acceptable
    else:
        assert envelope.tenant == "bordeaux"


def test_subjects_are_built_and_parsed_token_by_token() -> None:
    subject = Subject("parapheur", "le-taillan-medoc", "folder", "f1", "step", "assigned")
    assert str(subject) == "evt.parapheur.le-taillan-medoc.folder.f1.step.assigned"
    assert Subject.parse(str(subject)) == subject
    assert subject.aggregate_filter == "evt.parapheur.le-taillan-medoc.folder.f1.>"
    with pytest.raises(InvalidSubject):
        Subject("parapheur", "bordeaux", "folder", "has.dot", "step", "assigned")
    with pytest.raises(InvalidSubject):
        Subject("parapheur", "Bordeaux", "folder", "f", "step", "assigned")


def test_filters_select_by_service_tenant_event_and_aggregate() -> None:
    assert SubjectFilter.service("archive") == "evt.archive.>"
    assert SubjectFilter.tenant("pessac") == "evt.*.pessac.>"
    assert SubjectFilter.event("parapheur", "folder.completed") == (
        "evt.parapheur.*.*.*.folder.completed"
    )


def test_event_ids_are_time_ordered_and_derived_ids_are_stable() -> None:
    first, second = new_event_id(), new_event_id()
    assert uuid.UUID(first).version == 7
    assert str(uuid.UUID(first)) == first  # the canonical form, lower case and hyphenated
    assert uuid.UUID(first).variant == uuid.RFC_4122
    assert first[:8] <= second[:8]
    assert derived_event_id("cause", "label") == derived_event_id("cause", "label")
    assert derived_event_id("cause", "label") != derived_event_id("cause", "mail")


def test_an_envelope_keeps_its_time_in_utc() -> None:
    assert an_envelope().time.tzinfo == UTC
    assert an_envelope(time=datetime(2026, 1, 1, tzinfo=UTC)).time.year == 2026
