"""Least privilege on the bus, enforced by the real server: services hold only their own keys."""

from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import ConsumerConfig

from archive.manifest import MANIFEST as ARCHIVE
from archive.manifest import PARAPHEUR_DOCUMENTS
from identity.manifest import MANIFEST as IDENTITY
from mutualis_kernel.bus.connection import inbox_prefix
from mutualis_kernel.bus.consumer import EventConsumer
from mutualis_kernel.runtime import LocalCluster
from mutualis_kernel.runtime.security import OPERATOR, NatsSecurity, build_security
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KERNEL_RESOURCES, apply_resources_patiently
from mutualis_kernel.testing.fixtures import ClusterFactory
from parapheur.manifest import MANIFEST as PARAPHEUR


@pytest.fixture
async def secured(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> tuple[LocalCluster, NatsSecurity]:
    security = build_security(tmp_path / "credentials", [IDENTITY, PARAPHEUR, ARCHIVE])
    cluster = cluster_factory(datacenters=("dc1",), security=security)
    operator = await connect(cluster, security, OPERATOR)
    js = operator.jetstream()
    await apply_resources_patiently(
        js, [KERNEL_RESOURCES, IDENTITY.resources, PARAPHEUR.resources, ARCHIVE.resources], 1
    )
    await operator.close()
    return cluster, security


async def connect(cluster: LocalCluster, security: NatsSecurity, user: str) -> NATS:
    # As the kernel connects: a service's replies come to its own inbox prefix.
    return await nats.connect(
        servers=cluster.client_urls,
        nkeys_seed=str(security.seed_for(user)),
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(user),
    )


async def as_service(secured: tuple[LocalCluster, NatsSecurity], manifest: ServiceManifest) -> NATS:
    cluster, security = secured
    return await connect(cluster, security, manifest.name)


async def test_a_client_without_a_key_cannot_connect(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    cluster, _ = secured
    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(servers=cluster.client_urls, allow_reconnect=False, connect_timeout=2)


async def test_a_service_publishes_its_own_events(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    nc = await as_service(secured, IDENTITY)
    ack = await nc.jetstream().publish("evt.identity.bordeaux.user.u1.user.updated", b"{}")
    assert ack.stream == "IDENTITY_EVENTS"
    await nc.close()


async def test_a_service_cannot_publish_another_services_events(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    nc = await as_service(secured, IDENTITY)
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError)):
        await nc.jetstream().publish(
            "evt.parapheur.bordeaux.folder.f1.folder.completed", b"{}", timeout=1
        )
    await nc.close()

    cluster, security = secured
    operator = await connect(cluster, security, OPERATOR)
    info = await operator.jetstream().stream_info("PARAPHEUR_EVENTS")
    assert info.state.messages == 0
    await operator.close()


async def test_a_service_binds_only_the_consumers_its_manifest_declares(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    nc = await as_service(secured, PARAPHEUR)
    js = nc.jetstream()
    declared = PARAPHEUR.consumers[0]
    await js.add_consumer(
        declared.stream,
        ConsumerConfig(
            durable_name=declared.durable, filter_subjects=list(declared.filter_subjects)
        ),
    )
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await js.add_consumer(
            "IDENTITY_EVENTS", ConsumerConfig(durable_name="snooping", filter_subject="evt.>")
        )
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await js.get_msg("IDENTITY_EVENTS", seq=1)
    await nc.close()


async def test_a_consumer_on_another_services_stream_reads_only_what_its_manifest_declares(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    nc = await as_service(secured, ARCHIVE)
    js = nc.jetstream()
    (ingest,) = [c for c in ARCHIVE.consumers if c.stream == "PARAPHEUR_EVENTS"]
    consumer = EventConsumer(js, ingest, {})
    await consumer.ensure()  # as declared: allowed, and again (an update) too
    await consumer.ensure()
    (declared,) = ingest.filter_subjects
    # The same durable turned into a reader of every parapheur event, by either API.
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await js.add_consumer(
            ingest.stream,
            ConsumerConfig(
                name=ingest.durable, durable_name=ingest.durable, filter_subject="evt.>"
            ),
        )
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await js.add_consumer(
            ingest.stream,
            ConsumerConfig(durable_name=ingest.durable, filter_subjects=[declared, "evt.>"]),
        )
    await nc.close()
    operator = await connect(*secured, OPERATOR)
    info = await operator.jetstream().consumer_info(ingest.stream, ingest.durable)
    assert info.config.filter_subject == declared
    assert not info.config.filter_subjects
    await operator.close()


async def test_archive_reads_the_documents_parapheur_stored_but_cannot_change_them(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    parapheur = await as_service(secured, PARAPHEUR)
    documents = await parapheur.jetstream().object_store(PARAPHEUR_DOCUMENTS)
    await documents.put("bordeaux/f1/signed.pdf", b"%PDF-1.7 signed")
    await parapheur.close()

    archive = await as_service(secured, ARCHIVE)
    store = await archive.jetstream().object_store(PARAPHEUR_DOCUMENTS)
    assert (await store.get("bordeaux/f1/signed.pdf")).data == b"%PDF-1.7 signed"
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await store.put("bordeaux/f1/signed.pdf", b"forged")
    with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
        await store.delete("bordeaux/f1/signed.pdf")
    assert (await store.get("bordeaux/f1/signed.pdf")).data == b"%PDF-1.7 signed"
    await archive.close()


async def test_parapheur_schedules_reminders_on_its_private_stream(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    from parapheur.adapters.deadlines import ensure_stream

    nc = await as_service(secured, PARAPHEUR)
    await ensure_stream(nc.jetstream(), replicas=1)
    ack = await nc.jetstream().publish("parapheur.deadline.schedule.bordeaux.f1.reminder", b"x")
    assert ack.stream == "PARAPHEUR_DEADLINES"
    await nc.close()


async def test_a_service_cannot_read_another_services_replies(
    secured: tuple[LocalCluster, NatsSecurity],
) -> None:
    # Replies (and the messages a pull consumer delivers) travel on inbox subjects: a service
    # that could subscribe to `_INBOX.>` would read what the others fetch.
    errors: list[Exception] = []

    async def on_error(error: Exception) -> None:
        errors.append(error)

    cluster, security = secured
    spy = await nats.connect(
        servers=cluster.client_urls,
        nkeys_seed=str(security.seed_for(PARAPHEUR.name)),
        allow_reconnect=False,
        inbox_prefix=inbox_prefix(PARAPHEUR.name),
        error_cb=on_error,
    )
    seen: list[bytes] = []

    async def keep(message: nats.aio.msg.Msg) -> None:
        seen.append(message.data)

    await spy.subscribe(f"{inbox_prefix(IDENTITY.name)}.>", cb=keep)
    await spy.flush()
    identity = await as_service(secured, IDENTITY)
    info = await identity.jetstream().stream_info("IDENTITY_EVENTS")
    await identity.close()
    await spy.flush()
    await spy.close()
    assert info.config.name == "IDENTITY_EVENTS"  # identity got its own reply
    assert seen == []
    assert any("permissions violation" in str(error).lower() for error in errors)
