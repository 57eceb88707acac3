"""Hostile messages on every consumer's subjects end in DEAD_LETTERS, and the consumer goes on.

For each consumer the services' manifests declare, hypothesis generates a barrage of hostile
messages (bytes that are no envelope, oversize bodies, unknown types, a tenant that does not
match the subject, a known type with an invalid payload) published onto subjects the
consumer's filters match. Each must be dead-lettered with a reason naming the defect, and a
valid event published after the barrage must still be handled.

The consumers run as the kernel's `EventConsumer` with each spec exactly as declared and a
recording handler for every event type (hostile messages never reach a handler: they fail
decoding, which is the kernel's and the same for every service).
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import nats
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from archive.domain.events import HoldReleased
from archive.manifest import MANIFEST as ARCHIVE
from identity.domain.events import UserErased
from identity.manifest import MANIFEST as IDENTITY
from mutualis_kernel.bus import deadletter
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.contract.wildcards import subject_matches
from mutualis_kernel.events.envelope import MAX_EVENT_BYTES, Envelope, encode
from mutualis_kernel.events.registry import Event, catalog
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import DEAD_LETTER_STREAM, KERNEL_RESOURCES, apply_resources_patiently
from notifications.domain.events import NotificationRequested
from notifications.manifest import MANIFEST as NOTIFICATIONS
from parapheur.domain.events import DocumentRef, FolderCompleted, StepAssigned
from parapheur.manifest import MANIFEST as PARAPHEUR

MANIFESTS = (IDENTITY, PARAPHEUR, ARCHIVE, NOTIFICATIONS)
NOW = datetime.now(UTC)
SAMPLES: tuple[tuple[Event, str], ...] = (
    (UserErased(user_id="u1", tenant="bordeaux", kind="citizen"), "u1"),
    (StepAssigned(step=1, kind="visa", mode="any"), "f1"),
    (
        FolderCompleted(
            folder_id="f1",
            title="t",
            circuit_id="c",
            circuit_name="c",
            document=DocumentRef(object_name="o", filename="a.pdf", sha256="0" * 64, size=1),
            submitted_by="a",
            completed_at=NOW,
        ),
        "f1",
    ),
    (HoldReleased(record_id="r1", hold_id="h1", by="a", at=NOW), "r1"),
    (NotificationRequested(notification_id="n1", kind="k", category="c", channel="email"), "n1"),
)


def sample_for(spec: ConsumerSpec) -> Envelope[Event]:
    for event, aggregate_id in SAMPLES:
        envelope = Envelope(data=event, tenant="bordeaux", aggregate_id=aggregate_id)
        if any(subject_matches(f, str(encode(envelope)[0])) for f in spec.filter_subjects):
            return envelope
    raise AssertionError(f"no valid sample for {spec.durable}")


def specs() -> list[ConsumerSpec]:
    return [spec for manifest in MANIFESTS for spec in manifest.consumers]


Hostile = tuple[str, str, dict[str, str], bytes]  # (defect, subject, headers, body)


@st.composite
def hostile(draw: st.DrawFn, sample: Envelope[Event]) -> Hostile:
    subject, headers, body = encode(sample)
    headers = {k: v for k, v in headers.items() if k != "Nats-Msg-Id"}
    defect = draw(st.sampled_from(["garbage", "oversize", "unknown", "tenant", "payload"]))
    if defect == "garbage":
        dropped = draw(st.sets(st.sampled_from(sorted(headers)), min_size=1))
        headers = {k: v for k, v in headers.items() if k not in dropped}
        body = draw(st.binary(max_size=200))
    elif defect == "oversize":
        body = b'{"x":"' + b"a" * (MAX_EVENT_BYTES + draw(st.integers(1, 1000))) + b'"}'
    elif defect == "unknown":
        headers["ce-type"] = draw(
            st.from_regex(r"mutualis\.[a-z]{1,8}\.[a-z]{1,8}\.v[0-9]", fullmatch=True)
        )
    elif defect == "tenant":
        headers["ce-tenant"] = draw(st.sampled_from(["merignac", "pessac", "metropole"]))
    else:
        payload = draw(
            st.dictionaries(
                st.text(max_size=8),
                st.one_of(st.none(), st.integers(), st.text(max_size=8)),
                max_size=4,
            )
        )
        body = json.dumps(payload).encode()
    headers["Nats-Msg-Id"] = uuid.uuid4().hex
    return defect, subject, headers, body


async def dead_letters(js: Any, durable: str) -> list[dict[str, str]]:
    found = []
    sub = await js.subscribe(
        deadletter.dead_letter_subject(durable), stream=DEAD_LETTER_STREAM, ordered_consumer=True
    )
    try:
        while True:
            try:
                message = await sub.next_msg(timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                return found
            found.append(dict(message.headers or {}))
    finally:
        await sub.unsubscribe()


async def barrage(cluster: LocalCluster, spec: ConsumerSpec, messages: list[Hostile]) -> None:
    nc = await nats.connect(servers=cluster.client_urls)
    js = nc.jetstream()
    for manifest in MANIFESTS:
        await apply_resources_patiently(js, KERNEL_RESOURCES + manifest.resources, cluster.replicas)
    spec = ConsumerSpec(**{**spec.__dict__, "durable": f"{spec.durable}-{uuid.uuid4().hex[:6]}"})
    handled: list[str] = []

    async def record(envelope: Envelope[Event]) -> None:
        handled.append(envelope.id)

    consumer = EventConsumer(js, spec, {info.model: record for info in catalog})
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    try:
        await asyncio.wait_for(consumer.ready.wait(), 30)
        published = set()
        for _, subject, headers, body in messages:
            published.add((await js.publish(subject, body, headers=headers)).seq)
        valid = sample_for(spec)
        service = valid.data.service
        await EventPublisher(js, source_service=service).publish_envelope(valid)
        deadline = asyncio.get_running_loop().time() + 30
        while valid.id not in handled:
            assert asyncio.get_running_loop().time() < deadline, "valid event never handled"
            await asyncio.sleep(0.1)
        # The durable reads the stream from its start, earlier barrages included: look for ours.
        letters = {
            int(letter[deadletter.SEQUENCE]): letter
            for letter in await dead_letters(js, spec.durable)
        }
        assert published <= set(letters), [m[0] for m in messages]
        for sequence in published:
            assert letters[sequence][deadletter.REASON], letters[sequence]
            assert letters[sequence][deadletter.CONSUMER] == spec.durable
    finally:
        stop.set()
        await asyncio.wait_for(task, 20)
        await nc.close()


def attack_on(cluster: LocalCluster, spec: ConsumerSpec) -> Any:
    @settings(
        max_examples=2,
        derandomize=True,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(st.lists(hostile(sample_for(spec)), min_size=5, max_size=12))
    def attack(messages: list[Hostile]) -> None:
        asyncio.run(barrage(cluster, spec, messages))

    return attack


for _manifest in MANIFESTS:
    _manifest.load_events()


@pytest.mark.parametrize("spec", specs(), ids=lambda spec: spec.durable)
def test_a_consumer_dead_letters_hostile_messages_and_keeps_consuming(
    spec: ConsumerSpec, nats_cluster: LocalCluster
) -> None:
    attack_on(nats_cluster, spec)()
