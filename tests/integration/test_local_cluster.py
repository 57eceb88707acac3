"""The local three-datacenter runtime: real servers, one replica per datacenter."""

import nats
from nats.js.api import StreamConfig

from mutualis_kernel.runtime import LocalCluster


async def test_three_datacenters_elect_a_meta_leader_and_place_one_replica_in_each(
    nats_cluster: LocalCluster,
) -> None:
    assert nats_cluster.meta_leader() in {s.name for s in nats_cluster.specs}
    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        js = nc.jetstream()
        info = await js.add_stream(
            StreamConfig(name="PLACEMENT", subjects=["placement.>"], num_replicas=3)
        )
        peers = [info.cluster.leader] + [r.name for r in info.cluster.replicas or []]
        datacenters = {nats_cluster.datacenter_of(p) for p in peers}
        assert datacenters == {"dc1", "dc2", "dc3"}
    finally:
        await nc.close()
