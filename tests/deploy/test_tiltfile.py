"""tilt/Tiltfile, executed by a real Starlark interpreter (starlark-pyo3).

Tilt itself is not installable here, so its built-ins are replaced by recorders; `helm()` runs
the real `helm template` with the arguments the Tiltfile passes, so the resources the Tiltfile
names are looked up in the chart it would really install.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import starlark
import yaml

from identity.settings import IdentitySettings
from mutualis_kernel.config import DEFAULT_SECRET_MARKERS
from mutualis_kernel.service import default_ports

from .conftest import ROOT, run_helm

#: The services this distribution installs, and their default HTTP ports.
KNOWN_SERVICES = default_ports()

TILTFILE = ROOT / "tilt" / "Tiltfile"


@dataclass
class Recorded:
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)
    manifests: list[dict[str, Any]] = field(default_factory=list)

    def named(self, builtin: str) -> list[tuple[tuple[Any, ...], dict[str, Any]]]:
        return [(args, kwargs) for name, args, kwargs in self.calls if name == builtin]


def tilt_path(path: str) -> Path:
    # Tilt resolves relative paths against the Tiltfile's directory.
    return (TILTFILE.parent / path).resolve()


@pytest.fixture(scope="module")
def tilt(helm: Path, chart: Path) -> Recorded:
    recorded = Recorded()
    module = starlark.Module()

    def recorder(name: str, result: Any = None) -> Any:
        def builtin(*args: Any, **kwargs: Any) -> Any:
            recorded.calls.append((name, args, kwargs))
            return result if result is not None else {"builtin": name, "args": list(args)}

        return builtin

    def helm_builtin(path: str, **kwargs: Any) -> str:
        recorded.calls.append(("helm", (path,), kwargs))
        # The chart copy with the NATS stand-in: the dependency cannot be downloaded here.
        assert tilt_path(path) == ROOT / "deploy" / "helm" / "mutualis"
        args = ["template", kwargs["name"], str(chart), "--namespace", kwargs["namespace"]]
        for values in kwargs.get("values", []):
            args += ["-f", str(tilt_path(values))]
        for item in kwargs.get("set", []):
            args += ["--set", item]
        return run_helm(helm, *args)

    def k8s_yaml(text: str) -> None:
        recorded.calls.append(("k8s_yaml", (text,), {}))
        recorded.manifests += [doc for doc in yaml.safe_load_all(text) if doc]

    # Tilt's YAML built-ins: a Blob of YAML text in, Starlark values out, and back.
    def encode_yaml(obj: Any) -> str:
        return yaml.safe_dump(obj, sort_keys=False)

    def decode_yaml_stream(text: str) -> list[Any]:
        return [doc for doc in yaml.safe_load_all(text) if doc]

    for name in (
        "allow_k8s_contexts",
        "local",
        "watch_file",
        "docker_build",
        "sync",
        "port_forward",
        "k8s_resource",
    ):
        module.add_callable(name, recorder(name, "" if name == "local" else None))
    module.add_callable("helm", helm_builtin)
    module.add_callable("k8s_yaml", k8s_yaml)
    module.add_callable("encode_yaml", encode_yaml)
    module.add_callable("decode_yaml_stream", decode_yaml_stream)

    dialect = starlark.Dialect.extended()
    dialect.enable_top_level_stmt = True
    ast = starlark.parse(str(TILTFILE), TILTFILE.read_text(), dialect)
    starlark.eval(module, ast, starlark.Globals.standard())
    return recorded


def workloads(recorded: Recorded) -> dict[str, dict[str, Any]]:
    kinds = ("Deployment", "StatefulSet", "DaemonSet", "Job")
    return {d["metadata"]["name"]: d for d in recorded.manifests if d["kind"] in kinds}


def test_every_resource_the_tiltfile_names_exists_in_the_rendered_chart(tilt: Recorded) -> None:
    found = workloads(tilt)
    named = [args[0] for args, _ in tilt.named("k8s_resource")]
    assert sorted(named) == sorted(f"mutualis-{service}" for service in KNOWN_SERVICES)
    for resource in named:
        assert resource in found, f"{resource} is not a workload of the chart"


def test_each_service_is_forwarded_to_the_port_it_listens_on(tilt: Recorded) -> None:
    found = workloads(tilt)
    for args, kwargs in tilt.named("k8s_resource"):
        [forward] = kwargs["port_forwards"]
        local_port, container_port = forward["args"]
        service = args[0].removeprefix("mutualis-")
        assert local_port == container_port == KNOWN_SERVICES[service]
        container = found[args[0]]["spec"]["template"]["spec"]["containers"][0]
        assert container["ports"][0]["containerPort"] == container_port


def test_the_image_tilt_builds_is_the_one_the_chart_runs(tilt: Recorded) -> None:
    [(args, kwargs)] = tilt.named("docker_build")
    image, context = args
    assert tilt_path(context) == ROOT
    assert tilt_path(kwargs["dockerfile"]) == ROOT / "Dockerfile"
    assert f"AS {kwargs['target']}" in (ROOT / "Dockerfile").read_text()
    for deployment in workloads(tilt).values():
        running = deployment["spec"]["template"]["spec"]["containers"][0]["image"]
        assert running.split(":")[0] == image


def test_live_update_syncs_the_python_sources_the_dev_image_runs(tilt: Recorded) -> None:
    [(_, kwargs)] = tilt.named("docker_build")
    steps = kwargs["live_update"]
    synced = {
        tilt_path(step["args"][0]).relative_to(ROOT).as_posix(): step["args"][1] for step in steps
    }
    assert synced == {"libs": "/app/libs", "services": "/app/services"}
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "ENV PYTHONPATH=/app/libs:/app/services" in dockerfile
    for deployment in workloads(tilt).values():
        security = deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"]
        assert security["readOnlyRootFilesystem"] is False, "live update must write the files"


def test_the_chart_is_installed_with_the_dev_values(tilt: Recorded) -> None:
    [(args, kwargs)] = tilt.named("helm")
    assert [tilt_path(v).name for v in kwargs["values"]] == ["values-dev-single-zone.yaml"]
    [(local_args, _)] = tilt.named("local")
    command = shlex.split(local_args[0])
    assert command[:3] == ["helm", "dependency", "build"]
    assert tilt_path(command[3]) == tilt_path(args[0])


def secrets_referenced_by(pod: dict[str, Any]) -> dict[str, set[str]]:
    """Secret name -> keys, for every way a pod can read a Secret."""
    wanted: dict[str, set[str]] = {}
    for container in pod.get("containers", []) + pod.get("initContainers", []):
        for variable in container.get("env", []):
            if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                wanted.setdefault(ref["name"], set()).add(ref["key"])
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                wanted.setdefault(source["secretRef"]["name"], set())
    for volume in pod.get("volumes", []):
        if secret := volume.get("secret"):
            keys = wanted.setdefault(secret["secretName"], set())
            keys.update(item["key"] for item in secret.get("items", []))
        for source in volume.get("projected", {}).get("sources", []):
            if "secret" in source:
                keys = wanted.setdefault(source["secret"]["name"], set())
                keys.update(item["key"] for item in source["secret"].get("items", []))
    return wanted


def test_every_secret_a_dev_pod_reads_is_applied_by_tilt(tilt: Recorded) -> None:
    applied = {
        (d["metadata"].get("namespace"), d["metadata"]["name"]): d
        for d in tilt.manifests
        if d["kind"] == "Secret"
    }
    pods = list(workloads(tilt).values())
    assert pods
    referenced = 0
    for workload in pods:
        namespace = workload["metadata"]["namespace"]
        for name, keys in secrets_referenced_by(workload["spec"]["template"]["spec"]).items():
            referenced += 1
            secret = applied.get((namespace, name))
            assert secret is not None, f"{workload['metadata']['name']} reads Secret {name}"
            data = secret.get("stringData", {}) | secret.get("data", {})
            assert keys <= data.keys(), f"{name} lacks {sorted(keys - data.keys())}"
    assert referenced >= 4, "identity keys, signing PIN, SMTP and SMS at least"
    for secret in applied.values():
        kubernetes_validate.validate(secret, "1.33", strict=True)


def test_the_dev_secrets_are_refused_outside_dev_mode(tilt: Recorded) -> None:
    secrets = [d for d in tilt.manifests if d["kind"] == "Secret"]
    assert secrets
    for secret in secrets:
        for key, value in secret["stringData"].items():
            assert value in DEFAULT_SECRET_MARKERS, f"{secret['metadata']['name']}/{key}"
    for config in (d for d in tilt.manifests if d["kind"] == "ConfigMap"):
        assert config["data"]["MUTUALIS_DEV_MODE"] == "true", "the values only work in dev mode"
    with pytest.raises(ValueError, match="development default"):
        IdentitySettings(key_encryption_secret="dev-only", dev_mode=False)
    assert IdentitySettings(key_encryption_secret="dev-only", dev_mode=True)


def test_tilt_creates_the_namespace_it_installs_into(tilt: Recorded) -> None:
    namespaces = {d["metadata"]["name"] for d in tilt.manifests if d["kind"] == "Namespace"}
    used = {d["metadata"]["namespace"] for d in tilt.manifests if "namespace" in d["metadata"]}
    assert used == {"mutualis"}
    assert used <= namespaces


def test_the_pods_fetch_the_keys_from_identitys_service_and_the_browser_uses_the_forward(
    tilt: Recorded,
) -> None:
    """Tokens name the issuer the browser reaches (Tilt's port-forward to localhost); the
    other pods fetch identity's keys from its Service, since `localhost` would be themselves."""
    services = {d["metadata"]["name"]: d for d in tilt.manifests if d["kind"] == "Service"}
    forwards = {
        kwargs["port_forwards"][0]["args"][0]: args[0]
        for args, kwargs in tilt.named("k8s_resource")
    }
    for config in (d for d in tilt.manifests if d["kind"] == "ConfigMap"):
        issuer = urlsplit(config["data"]["MUTUALIS_ISSUER_URL"])
        assert issuer.hostname == "localhost"
        assert forwards[issuer.port] == "mutualis-identity"
        keys = urlsplit(config["data"]["MUTUALIS_JWKS_URL"])
        assert keys.hostname in services, f"{keys.hostname} is not a Service of the chart"
        [port] = services[keys.hostname]["spec"]["ports"]
        assert port["port"] == keys.port
        assert keys.path == "/jwks"
