"""The stretched three-zone NATS cluster that deploy/helm/values-nats-3zones.yaml asks for.

The official NATS chart cannot be downloaded here, so these tests build the server
configuration that chart 2.14.2 writes from these values (its files/config/*.yaml: the values
under `config` become JSON, `<< ... >>` is left unquoted, `merge` is merged in) and the
environment Kubernetes gives each pod (container.env in key order, `$(VAR)` expanded). Real
`nats-server` processes then check it: the configuration parses, each server carries its zone's
tag, and JetStream places the three replicas of a stream in three different zones.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
import yaml
from nats.js.api import StreamConfig, StreamInfo
from nats.js.errors import APIError

from mutualis_kernel.runtime import nats_server_binary
from mutualis_kernel.testing.ports import free_port_block

from .conftest import HELM_DIR, RELEASE

VALUES = yaml.safe_load((HELM_DIR / "values-nats-3zones.yaml").read_text())["nats"]
ZONES = ("dc1", "dc2", "dc3")
RAW = re.compile(r'"<<\s*(.*?)\s*>>"')


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def server_config(
    values: dict[str, Any],
    pod: int,
    host: str = "",
    ports: dict[str, int] | None = None,
    store_dir: str | None = None,
) -> dict[str, Any]:
    """The chart's nats.conf for pod `pod` (the parts these values touch), as a dict."""
    config = values["config"]
    ports = ports or {}
    name = f"{RELEASE}-nats"
    cluster = config["cluster"]
    replicas = int(cluster["replicas"])

    def route_port(index: int) -> int:
        return ports.get(f"cluster{index}", 6222)

    routes = [
        f"nats://{host or f'{name}-{i}.{name}-headless'}:{route_port(i)}" for i in range(replicas)
    ]
    jetstream = config["jetstream"]
    store = jetstream["fileStore"]
    built: dict[str, Any] = {
        "server_name": f"{name}-{pod}",
        "port": ports.get(f"client{pod}", 4222),
        "http_port": ports.get(f"monitor{pod}", 8222),
        "lame_duck_grace_period": "10s",
        "lame_duck_duration": "30s",
        "cluster": {
            "name": name,
            "port": route_port(pod),
            "no_advertise": True,
            "routes": routes,
        },
        "jetstream": deep_merge(
            {
                "store_dir": store_dir or store["dir"],
                "max_file_store": f"<< {store['pvc']['size']} >>",
            },
            jetstream.get("merge", {}),
        ),
    }
    if host:
        built["host"] = host
        built["cluster"]["host"] = host
    return deep_merge(built, config.get("merge", {}))


def render_config(config: dict[str, Any]) -> str:
    """JSON, with `<< x >>` strings unquoted as the chart does (variables, sizes)."""
    return RAW.sub(r"\1", json.dumps(config, indent=2))


def pod_environment(values: dict[str, Any], zone: str) -> dict[str, str]:
    """The container env Kubernetes builds: keys in order, `$(VAR)` of earlier ones expanded."""
    labels = {"topology.kubernetes.io/zone": zone}
    env: dict[str, str] = {}
    for key in sorted(values["container"]["env"]):
        spec = values["container"]["env"][key]
        if isinstance(spec, dict):
            path = spec["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
            assert label, path
            env[key] = labels.get(label.group(1), "")
        else:
            env[key] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), spec)
    return env


def test_each_server_is_tagged_with_its_own_zone() -> None:
    for zone in ZONES:
        assert pod_environment(VALUES, zone)["NATS_ZONE_TAG"] == f"dc:{zone}"
    config = server_config(VALUES, 0)
    assert config["server_tags"] == ["<< $NATS_ZONE_TAG >>"]
    assert config["jetstream"]["unique_tag"] == "dc:"


def test_the_cluster_is_three_persistent_servers_one_per_zone() -> None:
    assert VALUES["enabled"] is True
    assert VALUES["config"]["cluster"]["enabled"] is True
    assert VALUES["config"]["cluster"]["replicas"] == 3
    assert VALUES["config"]["jetstream"]["enabled"] is True
    assert VALUES["config"]["jetstream"]["fileStore"]["pvc"]["enabled"] is True
    spread = VALUES["podTemplate"]["topologySpreadConstraints"]["topology.kubernetes.io/zone"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    anti = VALUES["podTemplate"]["merge"]["spec"]["affinity"]["podAntiAffinity"]
    [term] = anti["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "topology.kubernetes.io/zone"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/name"] == "nats"


@pytest.mark.parametrize("pod", range(3))
def test_nats_server_accepts_the_configuration_of_each_pod(tmp_path: Path, pod: int) -> None:
    path = tmp_path / "nats.conf"
    path.write_text(render_config(server_config(VALUES, pod)))
    done = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        env={"NATS_ZONE_TAG": pod_environment(VALUES, ZONES[pod])["NATS_ZONE_TAG"]},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


class Cluster:
    def __init__(self, urls: list[str], monitors: list[str]) -> None:
        self.urls = urls
        self.monitors = monitors


@contextlib.asynccontextmanager
async def servers_in(zones: tuple[str, ...], tmp_path: Path) -> AsyncIterator[Cluster]:
    """The three servers of the values, on 127.0.0.1 ports instead of pod DNS names."""
    base = free_port_block(9)
    ports = {}
    for i in range(3):
        ports[f"client{i}"] = base + i
        ports[f"cluster{i}"] = base + 3 + i
        ports[f"monitor{i}"] = base + 6 + i
    processes = []
    try:
        for pod, zone in enumerate(zones):
            config = server_config(
                VALUES, pod, host="127.0.0.1", ports=ports, store_dir=str(tmp_path / f"js{pod}")
            )
            config["jetstream"]["max_file_store"] = "<< 1GB >>"
            path = tmp_path / f"nats{pod}.conf"
            path.write_text(render_config(config))
            with (tmp_path / f"nats{pod}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                        [nats_server_binary(), "-c", str(path)],
                        env=pod_environment(VALUES, zone),
                        stdout=log,
                        stderr=log,
                    )
                )
        monitors = [f"http://127.0.0.1:{ports[f'monitor{i}']}" for i in range(3)]
        async with httpx.AsyncClient() as client:
            for monitor in monitors:
                await until(functools.partial(healthy, client, monitor))
        yield Cluster([f"nats://127.0.0.1:{ports[f'client{i}']}" for i in range(3)], monitors)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)


async def healthy(client: httpx.AsyncClient, monitor: str) -> bool:
    try:
        return (await client.get(f"{monitor}/healthz")).status_code == 200
    except httpx.TransportError:
        return False


async def until(check: Callable[[], Awaitable[bool]], timeout: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(0.2)


async def add_r3_stream(urls: list[str]) -> StreamInfo:
    nc = await nats.connect(urls, connect_timeout=2)
    try:
        js = nc.jetstream(timeout=5)
        return await js.add_stream(
            StreamConfig(name="PLACEMENT", subjects=["placement.>"], num_replicas=3)
        )
    finally:
        await nc.close()


@pytest.mark.slow
async def test_jetstream_places_the_three_replicas_in_three_zones(tmp_path: Path) -> None:
    async with servers_in(ZONES, tmp_path) as cluster:
        async with httpx.AsyncClient() as client:
            tags = [(await client.get(f"{m}/varz")).json()["tags"] for m in cluster.monitors]
        assert tags == [[f"dc:{zone}"] for zone in ZONES]
        info = await add_r3_stream(cluster.urls)
        assert info.cluster is not None
        placed = {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])}
        assert placed == {f"{RELEASE}-nats-{i}" for i in range(3)}


@pytest.mark.slow
async def test_two_servers_in_one_zone_make_jetstream_refuse_r3(tmp_path: Path) -> None:
    """unique_tag is in force: R3 needs three distinct zones, it never doubles up in one."""
    async with servers_in(("dc1", "dc1", "dc2"), tmp_path) as cluster:
        with pytest.raises(APIError, match=r"(?i)insufficient resources|no suitable peers"):
            await add_r3_stream(cluster.urls)
