"""The audit trail lists a tenant's security-relevant events from the services' real streams.

Events are published through the kernel publisher with the services' real event types, on a
real three-datacenter cluster; the reader must list the audited ones of the asked tenant since
the asked time, typed, in time order, and nothing else.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import nats
import pytest
from nats.js import JetStreamContext

from archive.domain.events import HoldPlaced, IntegrityVerified, RecordAccessed, RecordDisposed
from archive.manifest import MANIFEST as ARCHIVE
from identity.domain.events import LoginFailed, LoginSucceeded, RoleGranted
from identity.manifest import MANIFEST as IDENTITY
from mutualis_kernel.audit import AuditReader, installed_rules
from mutualis_kernel.bus.publisher import EventPublisher
from mutualis_kernel.events.registry import catalog
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.streams import apply_resources_patiently
from parapheur.domain.events import DocumentRef, SignatureInfo, StepSigned
from parapheur.manifest import MANIFEST as PARAPHEUR

NOW = datetime.now(UTC)


@pytest.fixture
async def js(nats_cluster: LocalCluster) -> AsyncIterator[JetStreamContext]:
    nc = await nats.connect(servers=nats_cluster.client_urls)
    stream = nc.jetstream()
    for manifest in (IDENTITY, PARAPHEUR, ARCHIVE):
        await apply_resources_patiently(stream, manifest.resources, nats_cluster.replicas)
    try:
        yield stream
    finally:
        await nc.close()


def publisher(js: JetStreamContext, service: str) -> EventPublisher:
    return EventPublisher(js, source_service=service, datacenter="dc1")


def signed(actor: str) -> StepSigned:
    document = DocumentRef(object_name="o1", filename="a.pdf", sha256="0" * 64, size=10)
    signature = SignatureInfo(
        step=1,
        kind="signature",
        signer=actor,
        field_name="sig1",
        certificate_subject="CN=Bob",
        certificate_sha256="1" * 64,
        level="B-T",
        signed_at=NOW,
    )
    return StepSigned(
        step=1, actor=actor, slot=actor, document=document, signature=signature, at=NOW
    )


def test_every_audited_type_is_a_real_event_type() -> None:
    for manifest in (IDENTITY, PARAPHEUR, ARCHIVE):
        manifest.load_events()
    unknown = [
        rule.type_name for rule in installed_rules() if catalog.model_for(rule.type_name) is None
    ]
    assert unknown == []


async def test_the_trail_lists_one_tenants_security_events_across_services(
    js: JetStreamContext,
) -> None:
    since = datetime.now(UTC) - timedelta(seconds=1)
    identity, parapheur, archive = (publisher(js, s) for s in ("identity", "parapheur", "archive"))
    login = await identity.publish(
        LoginSucceeded(user_id="u-alice", tenant="bordeaux", acr="a", amr=("pwd",), client_id="c1"),
        tenant="bordeaux",
        aggregate_id="u-alice",
    )
    await identity.publish(
        LoginFailed(user_id="unknown", tenant="bordeaux", reason="bad_credentials"),
        tenant="bordeaux",
        aggregate_id="unknown",
    )
    await identity.publish(
        RoleGranted(
            user_id="u-bob", tenant="bordeaux", role="signatory", roles=("agent",), by="u-admin"
        ),
        tenant="bordeaux",
        aggregate_id="u-bob",
    )
    await parapheur.publish(signed("u-bob"), tenant="bordeaux", aggregate_id="f-1")
    await archive.publish(
        RecordAccessed(record_id="r-1", by="u-carol", roles=("archivist",), at=NOW),
        tenant="bordeaux",
        aggregate_id="r-1",
    )
    await archive.publish(
        HoldPlaced(record_id="r-1", hold_id="h-1", reason="litige", by="u-carol", at=NOW),
        tenant="bordeaux",
        aggregate_id="r-1",
    )
    await archive.publish(
        RecordDisposed(
            record_id="r-2",
            disposal_id="d-1",
            approved_by="u-carol",
            certificate_record_id="r-3",
            sha256="2" * 64,
            at=NOW,
        ),
        tenant="bordeaux",
        aggregate_id="r-2",
    )
    # Not audited (routine integrity check), and another tenant's login: both left out.
    await archive.publish(
        IntegrityVerified(record_id="r-1", sha256="0" * 64, checked_at=NOW),
        tenant="bordeaux",
        aggregate_id="r-1",
    )
    await identity.publish(
        LoginSucceeded(user_id="u-eve", tenant="merignac", acr="a", amr=("pwd",)),
        tenant="merignac",
        aggregate_id="u-eve",
    )

    entries = await AuditReader(js).entries("bordeaux", since)

    assert [(e.action, e.actor, e.object) for e in entries if e.service == "identity"] == [
        ("identity.login.succeeded", "u-alice", "c1"),
        ("identity.login.failed", "unknown", "bad_credentials"),
        ("identity.role.granted", "u-admin", "u-bob"),
    ]
    assert [(e.action, e.actor, e.object) for e in entries if e.service != "identity"] == [
        ("parapheur.step.signed", "u-bob", "f-1"),
        ("archive.record.accessed", "u-carol", "r-1"),
        ("archive.hold.placed", "u-carol", "r-1"),
        ("archive.record.disposed", "u-carol", "r-2"),
    ]
    assert {e.tenant for e in entries} == {"bordeaux"}
    assert entries == sorted(entries, key=lambda e: e.time)
    first = next(e for e in entries if e.action == "identity.login.succeeded")
    assert first.event_id == login.envelope.id
    assert first.event_type == "mutualis.identity.login.succeeded.v1"


async def test_events_before_since_are_left_out(js: JetStreamContext) -> None:
    await publisher(js, "identity").publish(
        LoginSucceeded(user_id="u-old", tenant="talence", acr="a", amr=("pwd",)),
        tenant="talence",
        aggregate_id="u-old",
    )
    later = datetime.now(UTC) + timedelta(seconds=5)
    assert await AuditReader(js).entries("talence", later) == []
    assert [e.actor for e in await AuditReader(js).entries("talence", NOW)] == ["u-old"]
