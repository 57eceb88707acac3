"""The stretched three-zone NATS cluster that deploy/helm/values-nats-3zones.yaml asks for.

The official NATS chart cannot be downloaded here, so these tests build the server
configuration that chart 2.14.2 writes from these values (its files/config/*.yaml: the values
under `config` become JSON, `<< ... >>` is left unquoted, `merge` is merged in, a `tls` block
points into the Secret's mount, `tlsCA` adds `ca_file`) and the environment Kubernetes gives
each pod (container.env in key order, `$(VAR)` expanded, secretKeyRef read from the Secrets the
operator created). Real `nats-server` processes then check it: the configuration parses, each
server carries its zone's tag, JetStream places the three replicas of a stream in three
different zones, clients and routes speak TLS with the certificate cert-manager would issue, and
the authorization generated from the manifests (values-nats-auth.yaml) lets a service publish
its own events and refuses it another service's.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import re
import shutil
import ssl
import stat
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import nats.errors
import nats.js.errors
import pytest
import yaml
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig, StreamInfo
from nats.js.errors import APIError
from typer.testing import CliRunner

from mutualis_cli.k8s import k8s_app
from mutualis_cli.k8s_nats import (
    CREDENTIALS_SECRET,
    OPERATOR_SECRET,
    SYSTEM,
    USERS_SECRET,
    ensure_credentials,
    nkey_variable,
    render_values,
)
from mutualis_kernel.runtime import Topology, nats_server_binary
from mutualis_kernel.runtime.security import OPERATOR, service_permissions
from mutualis_kernel.runtime.tls import ensure_dev_tls
from mutualis_kernel.service import default_ports, installed_manifests
from mutualis_kernel.streams import KERNEL_RESOURCES, apply_resources_patiently
from mutualis_kernel.testing.ports import free_port_block

from .conftest import HELM_DIR, RELEASE, ROOT, Render

#: The services this distribution installs, and their default HTTP ports.
KNOWN_SERVICES = default_ports()

ZONES = ("dc1", "dc2", "dc3")
RAW = re.compile(r'"<<\s*(.*?)\s*>>"')
AUTH_VALUES = HELM_DIR / "values-nats-auth.yaml"
CERTIFICATES = ROOT / "deploy" / "cert-manager" / "nats-tls.yaml"
NAMESPACE = "mutualis"


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def nats_values(*names: str) -> dict[str, Any]:
    """The `nats` values of these files, merged in order as `helm -f a -f b` does."""
    merged: dict[str, Any] = {}
    for name in names:
        merged = deep_merge(merged, yaml.safe_load((HELM_DIR / name).read_text())["nats"])
    return merged


#: What production installs: the three-zone cluster and the authorization generated for it.
VALUES = nats_values("values-nats-3zones.yaml", "values-nats-auth.yaml")


def tls_block(values: dict[str, Any], tls: dict[str, Any], root: Path | None) -> dict[str, Any]:
    """The chart's files/config/tls.yaml: the Secret's files, the CA, then `merge`."""

    def mounted(directory: str, name: str) -> str:
        path = f"{directory.rstrip('/')}/{name}"
        return str(root / path.lstrip("/")) if root else path

    block: dict[str, Any] = {}
    if tls.get("secretName"):
        block["cert_file"] = mounted(tls["dir"], tls.get("cert", "tls.crt"))
        block["key_file"] = mounted(tls["dir"], tls.get("key", "tls.key"))
    ca = values.get("tlsCA", {})
    if ca.get("enabled") and (ca.get("secretName") or ca.get("configMapName")):
        block["ca_file"] = mounted(ca.get("dir", "/etc/nats-ca-cert"), ca.get("key", "ca.crt"))
    return deep_merge(block, tls.get("merge", {}))


#: The chart's default mount points of the Secrets named in `tls` blocks.
TLS_DIRS = {"nats": "/etc/nats-certs/nats", "cluster": "/etc/nats-certs/cluster"}


def server_config(
    values: dict[str, Any],
    pod: int,
    host: str = "",
    ports: dict[str, int] | None = None,
    store_dir: str | None = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """The chart's nats.conf for pod `pod` (the parts these values touch), as a dict.

    `root` re-roots the Secrets' mount points (/etc/nats-certs/...) under a local directory.
    """
    config = values["config"]
    ports = ports or {}
    name = f"{RELEASE}-nats"
    cluster = config["cluster"]
    replicas = int(cluster["replicas"])
    cluster_tls = {"dir": TLS_DIRS["cluster"], **cluster.get("tls", {})}
    client_tls = {"dir": TLS_DIRS["nats"], **config.get("nats", {}).get("tls", {})}
    scheme = "tls" if cluster_tls.get("enabled") else "nats"

    def route_port(index: int) -> int:
        return ports.get(f"cluster{index}", 6222)

    routes = [
        f"{scheme}://{host or f'{name}-{i}.{name}-headless'}:{route_port(i)}"
        for i in range(replicas)
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
    if client_tls.get("enabled"):
        built["tls"] = tls_block(values, client_tls, root)
    if cluster_tls.get("enabled"):
        built["cluster"]["tls"] = tls_block(values, cluster_tls, root)
    built["cluster"] = deep_merge(built["cluster"], cluster.get("merge", {}))
    if host:
        built["host"] = host
        built["cluster"]["host"] = host
    return deep_merge(built, config.get("merge", {}))


def render_config(config: dict[str, Any]) -> str:
    """JSON, with `<< x >>` strings unquoted as the chart does (variables, sizes)."""
    return RAW.sub(r"\1", json.dumps(config, indent=2))


Secrets = dict[str, dict[str, str]]


def pod_environment(
    values: dict[str, Any], zone: str, secrets: Secrets | None = None
) -> dict[str, str]:
    """The container env Kubernetes builds: keys in order, `$(VAR)` of earlier ones expanded,
    labels from the downward API, secretKeyRef from `secrets` (name -> key -> value)."""
    labels = {"topology.kubernetes.io/zone": zone}
    env: dict[str, str] = {}
    for key in sorted(values["container"]["env"]):
        spec = values["container"]["env"][key]
        if isinstance(spec, dict):
            source = spec["valueFrom"]
            if "secretKeyRef" in source:
                ref = source["secretKeyRef"]
                assert secrets is not None, f"{key} needs the Secret {ref['name']}"
                env[key] = secrets[ref["name"]][ref["key"]]
                continue
            path = source["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['(.+)'\]", path)
            assert label, path
            env[key] = labels.get(label.group(1), "")
        else:
            env[key] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), spec)
    return env


@dataclass(frozen=True)
class Deployment:
    """What the operator created before `helm install`: the TLS Secret and the nkeys."""

    #: Where the pods' Secret mounts are re-rooted (etc/nats-certs/..., etc/nats-ca-cert).
    root: Path
    credentials: Path
    secrets: Secrets

    @property
    def ca_file(self) -> Path:
        return self.root / "etc" / "nats-ca-cert" / "ca.crt"

    def seed(self, user: str) -> Path:
        return self.credentials / f"{user}.nk"

    def client_tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca_file))


def deploy_secrets(base: Path) -> Deployment:
    """The Secret mutualis-nats-server-tls (cert-manager's layout: a certificate with server and
    client auth for 127.0.0.1) mounted where the chart mounts it, and `mutualis k8s
    nats-credentials`' files turned into mutualis-nats-users."""
    issued = ensure_dev_tls(base / "issued", hosts=("127.0.0.1", "localhost"))
    root = base / "pods"
    mounts = [TLS_DIRS["nats"], TLS_DIRS["cluster"]]
    for mount in mounts:
        directory = root / mount.lstrip("/")
        directory.mkdir(parents=True)
        shutil.copy(issued.cert, directory / "tls.crt")
        shutil.copy(issued.key, directory / "tls.key")
    (root / "etc" / "nats-ca-cert").mkdir(parents=True)
    shutil.copy(issued.ca, root / "etc" / "nats-ca-cert" / "ca.crt")
    credentials = base / "credentials"
    public_keys = ensure_credentials(credentials, installed_manifests())
    users = {f"{user}.pub": key for user, key in public_keys.items()}
    return Deployment(root, credentials, {USERS_SECRET: users})


def test_each_server_is_tagged_with_its_own_zone(tmp_path: Path) -> None:
    secrets = deploy_secrets(tmp_path).secrets
    for zone in ZONES:
        assert pod_environment(VALUES, zone, secrets)["NATS_ZONE_TAG"] == f"dc:{zone}"
    config = server_config(VALUES, 0)
    assert config["server_tags"] == ["<< $NATS_ZONE_TAG >>"]
    assert config["jetstream"]["unique_tag"] == "dc:"


def test_the_servers_accept_the_payloads_the_local_servers_accept(tmp_path: Path) -> None:
    """`mutualis up`'s servers are what the services are tested against: same max_payload."""
    topology = Topology(run_dir=tmp_path, datacenters=ZONES)
    local = topology.render_config(topology.nodes[0])
    [size] = re.findall(r"^max_payload: (\S+)$", local, re.MULTILINE)
    assert server_config(VALUES, 0)["max_payload"] == f"<< {size} >>"


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
    deployment = deploy_secrets(tmp_path)
    path = tmp_path / "nats.conf"
    path.write_text(render_config(server_config(VALUES, pod, root=deployment.root)))
    done = subprocess.run(
        [nats_server_binary(), "-t", "-c", str(path)],
        env=pod_environment(VALUES, ZONES[pod], deployment.secrets),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 0, done.stdout + done.stderr


# -- TLS ------------------------------------------------------------------------------------
def certificates() -> dict[str, dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all(CERTIFICATES.read_text()) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "Certificate"}


def covered(host: str, names: list[str]) -> bool:
    """TLS name matching: exact, or a wildcard standing for exactly one leftmost label."""
    for name in names:
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            first, rest = host.split(".", 1)
            if first and rest == name[2:]:
                return True
    return False


def test_clients_and_routes_use_tls_from_the_certificate_cert_manager_issues() -> None:
    config = server_config(VALUES, 0)
    [server] = [c for c in certificates().values() if not c["spec"].get("isCA")]
    secret = server["spec"]["secretName"]
    assert VALUES["config"]["nats"]["tls"]["secretName"] == secret
    assert VALUES["config"]["cluster"]["tls"]["secretName"] == secret
    assert VALUES["tlsCA"]["secretName"] == secret, "ca.crt of the same issuer"
    assert config["tls"]["cert_file"] == "/etc/nats-certs/nats/tls.crt"
    assert config["tls"]["ca_file"] == "/etc/nats-ca-cert/ca.crt"
    assert config["cluster"]["tls"]["verify"] is True, "mutual TLS between the servers"
    assert all(route.startswith("tls://") for route in config["cluster"]["routes"])
    assert {"server auth", "client auth"} <= set(server["spec"]["usages"])
    names = server["spec"]["dnsNames"]
    dialled = [re.sub(r"^tls://|:\d+$", "", route) for route in config["cluster"]["routes"]]
    for host in dialled:
        assert covered(host, names), f"{host} is not in the certificate's dnsNames"
    for fqdn in (
        f"{RELEASE}-nats.{NAMESPACE}.svc",
        f"{RELEASE}-nats-0.{RELEASE}-nats-headless.{NAMESPACE}.svc.cluster.local",
    ):
        assert covered(fqdn, names), fqdn
    assert not covered(f"{RELEASE}-nats-0.other-headless", names)
    # Issued by the file's own CA, whose key pair is a CA certificate of the same file.
    issuers = {
        d["metadata"]["name"]: d
        for d in yaml.safe_load_all(CERTIFICATES.read_text())
        if d and d["kind"] == "Issuer"
    }
    ca_secret = issuers[server["spec"]["issuerRef"]["name"]]["spec"]["ca"]["secretName"]
    [ca] = [c for c in certificates().values() if c["spec"]["secretName"] == ca_secret]
    assert ca["spec"]["isCA"] is True


def test_the_services_dial_a_name_of_the_certificate_with_their_own_nkey(render: Render) -> None:
    """The production values of the Mutualis chart against the NATS servers' TLS and users."""
    docs = render(
        ["values-production-3zones.yaml", "values-nats-3zones.yaml", "values-nats-auth.yaml"]
    )
    [server] = [c for c in certificates().values() if not c["spec"].get("isCA")]
    configs = {
        d["metadata"]["labels"]["app.kubernetes.io/name"]: d
        for d in docs
        if d["kind"] == "ConfigMap"
    }
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert sorted(configs) == sorted(KNOWN_SERVICES)
    for service, config in configs.items():
        [url] = json.loads(config["data"]["MUTUALIS_NATS_URLS"])
        scheme, _, host = url.rpartition(":")[0].partition("://")
        assert scheme == "tls"
        assert covered(host, server["spec"]["dnsNames"]), host
        seed = config["data"]["MUTUALIS_NATS_NKEY_SEED_FILE"]
        assert seed == f"/etc/mutualis/nats-credentials/{service}.nk"
    for deployment in deployments:
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["nats-ca"]["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
        assert volumes["nats-credentials"]["secret"]["secretName"] == CREDENTIALS_SECRET


# -- authorization ---------------------------------------------------------------------------
def test_the_authorization_values_are_generated_from_the_manifests() -> None:
    assert AUTH_VALUES.read_text() == render_values(installed_manifests()), (
        "values-nats-auth.yaml is out of date: run "
        "`mutualis k8s nats-values --out deploy/helm/values-nats-auth.yaml`"
    )
    authorization = VALUES["config"]["merge"]["authorization"]
    by_key = {user["nkey"]: user for user in authorization["users"]}
    for manifest in installed_manifests():
        user = by_key[f"<< ${nkey_variable(manifest.name)} >>"]
        publish, subscribe = service_permissions(manifest)
        assert user["permissions"]["publish"]["allow"] == list(publish)
        assert user["permissions"]["subscribe"]["allow"] == list(subscribe)
    assert "permissions" not in by_key[f"<< ${nkey_variable(OPERATOR)} >>"]
    system = VALUES["config"]["merge"]["accounts"]["SYS"]["users"]
    assert system == [{"nkey": f"<< ${nkey_variable(SYSTEM)} >>"}]


def test_no_key_is_written_in_the_values() -> None:
    text = AUTH_VALUES.read_text() + (HELM_DIR / "values-nats-3zones.yaml").read_text()
    assert not re.search(r"\bU[A-Z2-7]{55}\b", text), "a public nkey belongs in the Secret"
    assert not re.search(r"\bS[A-Z][A-Z2-7]{56}\b", text), "a seed in values"
    for variable, spec in VALUES["container"]["env"].items():
        if variable.startswith("NATS_NKEY_"):
            assert spec["valueFrom"]["secretKeyRef"]["name"] == USERS_SECRET


def test_nats_credentials_makes_seeds_public_keys_and_the_secrets_to_create(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "nkeys"
    args = ["nats-credentials", "--dir", str(directory), "-n", NAMESPACE]
    first = CliRunner().invoke(k8s_app, args)
    assert first.exit_code == 0, first.output
    users = [OPERATOR, SYSTEM, *KNOWN_SERVICES]
    for user in users:
        seed = directory / f"{user}.nk"
        assert stat.S_IMODE(seed.stat().st_mode) == 0o600
        assert (directory / f"{user}.pub").read_text().startswith("U")
    seeds = {user: (directory / f"{user}.nk").read_bytes() for user in users}
    for secret in (CREDENTIALS_SECRET, OPERATOR_SECRET, USERS_SECRET):
        assert f"create secret generic {secret}" in first.output
    assert f"--from-file={directory / 'identity.nk'}" in first.output
    again = CliRunner().invoke(k8s_app, args)
    assert again.exit_code == 0, again.output
    assert seeds == {user: (directory / f"{user}.nk").read_bytes() for user in users}, "kept"
    for seed in seeds.values():
        assert seed.decode().strip() not in first.output, "seeds are never printed"


def test_nats_values_for_one_nats_release_per_zone_drop_the_umbrella_key() -> None:
    result = CliRunner().invoke(k8s_app, ["nats-values", "--standalone"])
    assert result.exit_code == 0, result.output
    standalone = yaml.safe_load(result.output)
    assert standalone == yaml.safe_load(AUTH_VALUES.read_text())["nats"]


def test_nats_values_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    current = CliRunner().invoke(k8s_app, ["nats-values", "--check", "--out", str(AUTH_VALUES)])
    assert current.exit_code == 0, current.output
    stale = tmp_path / "stale.yaml"
    stale.write_text(AUTH_VALUES.read_text().replace("evt.identity.>", "evt.>"))
    result = CliRunner().invoke(k8s_app, ["nats-values", "--check", "--out", str(stale)])
    assert result.exit_code == 1


@dataclass(frozen=True)
class Cluster:
    urls: list[str]
    monitors: list[str]
    deployment: Deployment

    async def connect(self, user: str, **options: Any) -> NATS:
        """A client as the kernel makes one: the NATS CA, and `user`'s own seed."""
        return await nats.connect(
            self.urls,
            connect_timeout=2,
            allow_reconnect=False,
            tls=self.deployment.client_tls(),
            nkeys_seed=str(self.deployment.seed(user)),
            inbox_prefix=f"_INBOX.{user}" if user in KNOWN_SERVICES else "_INBOX",
            **options,
        )


@contextlib.asynccontextmanager
async def servers_in(zones: tuple[str, ...], tmp_path: Path) -> AsyncIterator[Cluster]:
    """The three servers of the values, on 127.0.0.1 ports instead of pod DNS names, with the
    TLS Secret and the nkeys an operator creates."""
    deployment = deploy_secrets(tmp_path)
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
                VALUES,
                pod,
                host="127.0.0.1",
                ports=ports,
                store_dir=str(tmp_path / f"js{pod}"),
                root=deployment.root,
            )
            config["jetstream"]["max_file_store"] = "<< 1GB >>"
            path = tmp_path / f"nats{pod}.conf"
            path.write_text(render_config(config))
            with (tmp_path / f"nats{pod}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(  # noqa: ASYNC220 - Popen returns at once
                        [nats_server_binary(), "-c", str(path)],
                        env=pod_environment(VALUES, zone, deployment.secrets),
                        stdout=log,
                        stderr=log,
                    )
                )
        monitors = [f"http://127.0.0.1:{ports[f'monitor{i}']}" for i in range(3)]
        async with httpx.AsyncClient() as client:
            for monitor in monitors:
                await until(functools.partial(healthy, client, monitor))
        urls = [f"tls://127.0.0.1:{ports[f'client{i}']}" for i in range(3)]
        yield Cluster(urls, monitors, deployment)
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


async def add_r3_stream(cluster: Cluster) -> StreamInfo:
    nc = await cluster.connect(OPERATOR)
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
            varz = [(await client.get(f"{m}/varz")).json() for m in cluster.monitors]
        assert [v["tags"] for v in varz] == [[f"dc:{zone}"] for zone in ZONES]
        for server in varz:
            assert server["tls_required"] is True, "clients must speak TLS"
            assert server["cluster"]["tls_required"] is True
            assert server["cluster"]["tls_verify"] is True, "routes are mutual TLS"
        info = await add_r3_stream(cluster)
        assert info.cluster is not None
        placed = {info.cluster.leader, *(r.name for r in info.cluster.replicas or [])}
        assert placed == {f"{RELEASE}-nats-{i}" for i in range(3)}, "the TLS routes are up"


@pytest.mark.slow
async def test_two_servers_in_one_zone_make_jetstream_refuse_r3(tmp_path: Path) -> None:
    """unique_tag is in force: R3 needs three distinct zones, it never doubles up in one."""
    async with servers_in(("dc1", "dc1", "dc2"), tmp_path) as cluster:
        with pytest.raises(APIError, match=r"(?i)insufficient resources|no suitable peers"):
            await add_r3_stream(cluster)


@pytest.mark.slow
async def test_a_service_publishes_its_own_events_and_is_refused_another_services(
    tmp_path: Path,
) -> None:
    """The generated authorization, enforced by the real servers of the three-zone values."""
    manifests = {m.name: m for m in installed_manifests()}
    async with servers_in(ZONES, tmp_path) as cluster:
        operator = await cluster.connect(OPERATOR)
        resources = [KERNEL_RESOURCES, manifests["identity"].resources]
        resources.append(manifests["parapheur"].resources)
        await apply_resources_patiently(operator.jetstream(timeout=5), resources, 3)

        identity = await cluster.connect("identity")
        js = identity.jetstream(timeout=5)
        ack = await js.publish("evt.identity.bordeaux.user.u1.user.updated", b"{}")
        assert ack.stream == "IDENTITY_EVENTS"
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.NoStreamResponseError)):
            await js.publish("evt.parapheur.bordeaux.folder.f1.folder.completed", b"{}", timeout=1)
        with pytest.raises((nats.errors.TimeoutError, nats.js.errors.Error)):
            await js.get_msg("PARAPHEUR_EVENTS", seq=1)
        await identity.close()

        info = await operator.jetstream(timeout=5).stream_info("PARAPHEUR_EVENTS")
        assert info.state.messages == 0, "the forged event never reached the stream"
        await operator.close()

        with pytest.raises((nats.errors.Error, OSError)):
            await nats.connect(
                cluster.urls,
                connect_timeout=2,
                allow_reconnect=False,
                tls=cluster.deployment.client_tls(),
            )
