"""The kernel's NATS connection when the node it talks to goes away."""

from __future__ import annotations

import asyncio

import nats
import nats.aio.client
import nats.errors
import pytest
from nats.aio.msg import Msg

from mutualis_kernel.bus.connection import RequestAbandoned, connect
from mutualis_kernel.bus.publisher import is_transient
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.testing.fixtures import ClusterFactory


async def echo(client: nats.aio.client.Client) -> bytes:
    """The responder's answer, once its interest has reached the node the client is on."""
    for _ in range(100):
        try:
            return (await client.request("svc.echo", b"ping", timeout=10)).data
        except nats.errors.NoRespondersError:
            await asyncio.sleep(0.1)
    raise AssertionError("the responder's subscription never reached the client's node")


async def test_a_request_in_flight_when_its_node_stops_fails_at_once_as_transient(
    cluster_factory: ClusterFactory,
) -> None:
    cluster = cluster_factory()
    responder = await nats.connect(servers=cluster.urls_for("dc3"))

    async def answer_only_echo(msg: Msg) -> None:
        if msg.subject == "svc.echo":
            await msg.respond(b"pong")  # svc.silent is never answered

    await responder.subscribe("svc.*", cb=answer_only_echo)
    await responder.flush()
    client = await connect(KernelSettings(dev_mode=True, nats_urls=cluster.urls_for("dc1")))
    try:
        assert await echo(client) == b"pong"
        in_flight = asyncio.create_task(client.request("svc.silent", b"?", timeout=60))
        await asyncio.sleep(0.2)

        cluster.terminate("dc1")  # a graceful stop of the node the client talks to

        # Without the kernel's disconnect handling this waits the whole minute, then times out;
        # with it, it times out now (nats-py turns every timeout into its own error type).
        with pytest.raises(nats.errors.TimeoutError) as failure:
            await in_flight
        assert isinstance(failure.value.__context__, RequestAbandoned)
        assert is_transient(failure.value)
        # The retry the kernel would make goes through the node the client reconnected to.
        assert await echo(client) == b"pong"
        assert client.connected_url is not None
        assert client.connected_url.port != cluster.node_named("dc1-n1").spec.client_port
    finally:
        await client.close()
        await responder.close()
