"""What TLS (and nkey authentication) cost on the three-datacenter cluster, same run.

Two clusters of three nodes on loopback: plain, and the `mutualis up` default — client TLS
plus mutual TLS on the routes that carry replication, every client authenticated by an nkey
with its permissions. On each: raw nats-py publishes to an R3 stream (windows of 256, acks
awaited per window), a pull consumer that fetches and acks them, and one-at-a-time publish
latency. The ratio secure/plain is the price of transport security.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, StreamConfig

from bench.harness import latency_summary_ms, ratio
from mutualis_kernel.runtime import LocalCluster, Topology
from mutualis_kernel.runtime.security import OPERATOR, build_security
from mutualis_kernel.runtime.tls import ensure_dev_tls
from mutualis_kernel.testing.ports import free_port_block

WINDOW = 256


@contextlib.contextmanager
def cluster(secure: bool) -> Iterator[tuple[LocalCluster, dict[str, Any]]]:
    with tempfile.TemporaryDirectory(prefix="mutualis-bench-tls-") as run_dir:
        base = Path(run_dir)
        options: dict[str, Any] = {}
        connect: dict[str, Any] = {}
        if secure:
            files = ensure_dev_tls(base / "tls")
            security = build_security(base / "credentials", ())
            options = {"tls": files, "security": security}
            connect = {
                "tls": ssl.create_default_context(cafile=str(files.ca)),
                "nkeys_seed": str(security.seed_for(OPERATOR)),
            }
        topology = Topology(
            run_dir=base,
            client_port_base=free_port_block(3),
            monitor_port_base=free_port_block(3),
            cluster_port_base=free_port_block(3),
            **options,
        )
        local = LocalCluster(topology)
        with local.running():
            yield local, connect


async def measure(nc: Client, count: int, sync_count: int) -> dict[str, Any]:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name="BENCH", subjects=["bench.>"], num_replicas=3))
    body = json.dumps({"reference": "x" * 200}).encode()
    started = time.perf_counter()
    for start in range(0, count, WINDOW):
        futures = [
            await js.publish_async(f"bench.{n}", body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
            for n in range(start, min(start + WINDOW, count))
        ]
        await asyncio.gather(*(asyncio.wait_for(f, 10) for f in futures))
    published = time.perf_counter() - started

    await js.add_consumer(
        "BENCH",
        ConsumerConfig(durable_name="bench", ack_policy=AckPolicy.EXPLICIT, max_ack_pending=10_000),
    )
    subscription = await js.pull_subscribe_bind("bench", stream="BENCH")
    seen = 0
    started = time.perf_counter()
    while seen < count:
        for message in await subscription.fetch(WINDOW, timeout=5):
            await message.ack()
            seen += 1
    consumed = time.perf_counter() - started

    latencies = []
    for n in range(sync_count):
        started = time.perf_counter()
        await js.publish(f"bench.sync.{n}", body, headers={"Nats-Msg-Id": uuid.uuid4().hex})
        latencies.append(time.perf_counter() - started)
    return {
        "publish_per_s": round(count / published),
        "consume_per_s": round(count / consumed),
        "publish_then_consume_per_s": round(count / (published + consumed)),
        "sync_publish": latency_summary_ms(latencies),
    }


async def run(quick: bool = False) -> dict[str, Any]:
    count = 4_000 if quick else 20_000
    sync_count = 300 if quick else 2_000
    figures: dict[str, Any] = {}
    for name, secure in (("plain", False), ("tls_and_nkeys", True)):
        with cluster(secure) as (local, options):
            nc = await nats.connect(servers=local.client_urls, **options)
            try:
                figures[name] = await measure(nc, count, sync_count)
            finally:
                await nc.close()
    plain, secure = figures["plain"], figures["tls_and_nkeys"]
    return {
        "workload": {
            "events": count,
            "window": WINDOW,
            "stream": "R3, one replica per datacenter, 3 nats-server on loopback",
            "secure": "client TLS (ECDSA P-256 dev CA) + mutual TLS routes + nkey auth",
        },
        **figures,
        "ratios_secure_to_plain": {
            "publish": ratio(secure["publish_per_s"], plain["publish_per_s"]),
            "consume": ratio(secure["consume_per_s"], plain["consume_per_s"]),
            "publish_then_consume": ratio(
                secure["publish_then_consume_per_s"], plain["publish_then_consume_per_s"]
            ),
            "sync_publish_p50_slowdown": ratio(
                secure["sync_publish"]["p50_ms"], plain["sync_publish"]["p50_ms"]
            ),
        },
    }
