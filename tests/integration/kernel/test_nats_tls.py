"""TLS for clients and mutual TLS between the three datacenters' routes."""

import ssl
from pathlib import Path

import nats
import nats.errors
import pytest
from nats.js.api import StreamConfig

from mutualis_kernel.bus.connection import connect
from mutualis_kernel.bus.publisher import with_retries
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.runtime.tls import ensure_dev_tls
from mutualis_kernel.testing.fixtures import ClusterFactory


async def test_a_tls_cluster_replicates_over_mutual_tls_routes(
    cluster_factory: ClusterFactory, tmp_path: Path
) -> None:
    files = ensure_dev_tls(tmp_path / "tls")
    cluster = cluster_factory(tls=files)
    settings = KernelSettings(
        dev_mode=True, nats_urls=cluster.client_urls, nats_tls_ca_file=str(files.ca)
    )
    nc = await connect(settings)
    js = nc.jetstream()
    info = await js.add_stream(StreamConfig(name="SECRET", subjects=["secret.>"], num_replicas=3))
    assert len(info.cluster.replicas or []) == 2  # the routes carry the replication
    # A fresh R3 stream answers once its leader is elected: give it the publisher's patience.
    ack = await with_retries(lambda: js.publish("secret.one", b"payload"), 15, "publish")
    assert ack.stream == "SECRET"
    await nc.close()

    assert all(url.startswith("tls://") for url in cluster.client_urls)
    with pytest.raises((nats.errors.Error, ssl.SSLError, OSError)):
        await nats.connect(
            servers=[u.replace("tls://", "nats://") for u in cluster.client_urls],
            allow_reconnect=False,
            connect_timeout=2,
            tls=None,
        )
