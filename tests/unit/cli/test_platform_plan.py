"""Where `mutualis up` puts service instances: ports and NATS URLs, without starting anything."""

from pathlib import Path

import pytest

from mutualis_cli.platform import BadOptions, UpOptions, plan_services
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import Resources


def manifest(name: str, port: int) -> ServiceManifest:
    return ServiceManifest(name=name, description=name, default_port=port, resources=Resources())


SERVICES = [manifest("identity", 8001), manifest("archive", 8003)]


def test_one_instance_each_in_dc1_keeping_the_default_port_offset(tmp_path: Path) -> None:
    options = UpOptions(run_dir=tmp_path, port_base_services=9001)

    launches = plan_services(options, options.topology(SERVICES), SERVICES)

    assert [(s.label, s.port) for s in launches] == [("identity@dc1", 9001), ("archive@dc1", 9003)]
    assert launches[0].nats_urls == [
        "tls://127.0.0.1:4222",
        "tls://127.0.0.1:4223",
        "tls://127.0.0.1:4224",
    ]
    assert launches[0].replicas == 3


def test_ha_puts_one_instance_per_datacenter_ten_ports_apart_own_node_first(
    tmp_path: Path,
) -> None:
    options = UpOptions(run_dir=tmp_path, ha=True)

    launches = plan_services(options, options.topology(SERVICES[:1]), SERVICES[:1])

    assert [(s.label, s.port) for s in launches] == [
        ("identity@dc1", 8001),
        ("identity@dc2", 8011),
        ("identity@dc3", 8021),
    ]
    assert [s.nats_urls[0] for s in launches] == [
        "tls://127.0.0.1:4222",
        "tls://127.0.0.1:4223",
        "tls://127.0.0.1:4224",
    ]


def test_no_services_plans_none(tmp_path: Path) -> None:
    options = UpOptions(run_dir=tmp_path, no_services=True)

    assert plan_services(options, options.topology(SERVICES), SERVICES) == []


def test_single_is_one_node_with_one_replica(tmp_path: Path) -> None:
    topology = UpOptions(run_dir=tmp_path, single=True).topology()

    assert [n.name for n in topology.nodes] == ["dc1-n1"]
    assert topology.replicas == 1


def test_ha_cannot_run_on_a_single_node(tmp_path: Path) -> None:
    with pytest.raises(BadOptions, match="--ha"):
        UpOptions(run_dir=tmp_path, single=True, ha=True).topology()


def test_an_instance_gets_its_settings_from_the_environment(tmp_path: Path) -> None:
    options = UpOptions(run_dir=tmp_path, ha=True)
    launch = plan_services(options, options.topology(SERVICES[:1]), SERVICES[:1])[1]

    env = launch.environment({"PATH": "/bin"})

    assert env["PATH"] == "/bin"
    assert env["MUTUALIS_SERVICE_NAME"] == "identity"
    assert env["MUTUALIS_HTTP_PORT"] == "8011"
    assert env["MUTUALIS_DATACENTER"] == "dc2"
    assert env["MUTUALIS_NATS_URLS"].startswith('["tls://127.0.0.1:4223"')
    assert env["MUTUALIS_DEV_MODE"] == "true"


def test_each_service_gets_the_dev_ca_and_its_own_nkey_seed(tmp_path: Path) -> None:
    options = UpOptions(run_dir=tmp_path)

    launches = plan_services(options, options.topology(SERVICES), SERVICES)

    seeds = {launch.name: launch.shared_env["MUTUALIS_NATS_NKEY_SEED_FILE"] for launch in launches}
    assert {name: Path(seed).name for name, seed in seeds.items()} == {
        manifest.name: f"{manifest.name}.nk" for manifest in SERVICES
    }
    assert {launch.shared_env["MUTUALIS_NATS_TLS_CA_FILE"] for launch in launches} == {
        str(tmp_path.resolve() / "nats" / "tls" / "ca.pem")
    }
    assert all(url.startswith("tls://") for launch in launches for url in launch.nats_urls)


def test_without_tls_and_nkeys_services_get_neither(tmp_path: Path) -> None:
    options = UpOptions(run_dir=tmp_path, tls=False, nkeys=False)

    [launch] = plan_services(options, options.topology(SERVICES[:1]), SERVICES[:1])

    assert "MUTUALIS_NATS_NKEY_SEED_FILE" not in launch.shared_env
    assert "MUTUALIS_NATS_TLS_CA_FILE" not in launch.shared_env
    assert all(url.startswith("nats://") for url in launch.nats_urls)
