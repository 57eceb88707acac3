"""`mutualis k8s status`, `mutualis k8s drill --kill-zone` and `mutualis drill --kubernetes
--kill-zone`, against a fake API server.

No Kubernetes cluster can run on our machines (no kube-apiserver, kind or k3d is reachable), so
these tests start a small fake API server: a FastAPI app on a free port serving the three
endpoints the commands use (list nodes, list pods by label selector, delete a pod) with the
official `kubernetes` client talking real HTTP to it. The fake plays the controllers' part:
a deleted Deployment pod is replaced under a new name, a deleted StatefulSet pod under the same
name, in the same zone, and a replacement turns ready after a few looks (no clock involved).
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from fastapi import FastAPI, HTTPException
from typer.testing import CliRunner

from mutualis_cli.k8s import NOT_MEASURED, DrillRefused, core_api, k8s_app, kill_zone, observe
from mutualis_cli.main import app
from mutualis_kernel.service import default_ports
from mutualis_kernel.testing.ports import free_port_block

#: The services this distribution installs, and their default HTTP ports.
KNOWN_SERVICES = default_ports()

NAMESPACE = "mutualis"
RELEASE = "mutualis"
ZONES = ("dc1", "dc2", "dc3")


@dataclass
class FakePod:
    name: str
    role: str  # a service, or "nats"
    node: str
    uid: str
    ready_at: int  # the look (nodes listing) from which the pod reports Ready

    def labels(self) -> dict[str, str]:
        if self.role == "nats":
            return {
                "app.kubernetes.io/name": "nats",
                "app.kubernetes.io/instance": RELEASE,
                "app.kubernetes.io/component": "nats",
            }
        return {
            "app.kubernetes.io/name": self.role,
            "app.kubernetes.io/instance": RELEASE,
            "app.kubernetes.io/part-of": "mutualis",
        }

    def document(self, look: int) -> dict[str, Any]:
        ready = look >= self.ready_at
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": self.name,
                "namespace": NAMESPACE,
                "uid": self.uid,
                "labels": self.labels(),
            },
            "spec": {"nodeName": self.node, "containers": [{"name": "main", "image": "x"}]},
            "status": {
                "phase": "Running",
                "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            },
        }


@dataclass
class FakeCluster:
    """Two nodes per zone, one pod of each service and one NATS server per zone."""

    #: How many looks a replacement pod takes to become ready; None: it never does.
    replacement_delay: int | None = 3
    looks: int = 0
    deleted: list[str] = field(default_factory=list)
    #: Namespaces the client listed pods in.
    namespaces_listed: list[str] = field(default_factory=list)
    #: Called after each deletion (a test's way to make other pods misbehave meanwhile).
    after_delete: Callable[[FakeCluster], None] | None = None
    pods: dict[str, FakePod] = field(default_factory=dict)
    uids: Iterator[int] = field(default_factory=itertools.count)

    def __post_init__(self) -> None:
        self.nodes = {f"node-{zone}-{i}": zone for zone in ZONES for i in (1, 2)}
        for index, zone in enumerate(ZONES):
            for service in KNOWN_SERVICES:
                self.add(f"{RELEASE}-{service}-{zone}-{next(self.uids)}", service, zone, 0)
            self.add(f"{RELEASE}-nats-{index}", "nats", zone, 0)

    def add(self, name: str, role: str, zone: str, ready_at: int) -> None:
        node = f"node-{zone}-{1 + len(self.pods) % 2}"
        self.pods[name] = FakePod(name, role, node, f"uid-{next(self.uids)}", ready_at)

    def delete(self, name: str) -> FakePod:
        pod = self.pods.pop(name)
        self.deleted.append(name)
        zone = self.nodes[pod.node]
        never = 10**9
        ready_at = never if self.replacement_delay is None else self.looks + self.replacement_delay
        # StatefulSets keep the name; Deployments' ReplicaSets pick a new one.
        name = pod.name if pod.role == "nats" else f"{RELEASE}-{pod.role}-{zone}-{next(self.uids)}"
        self.add(name, pod.role, zone, ready_at)
        if self.after_delete is not None:
            self.after_delete(self)
        return pod

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/api/v1/nodes")
        def list_nodes() -> dict[str, Any]:
            self.looks += 1
            items = [
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": {"topology.kubernetes.io/zone": zone}},
                }
                for name, zone in self.nodes.items()
            ]
            return {"apiVersion": "v1", "kind": "NodeList", "metadata": {}, "items": items}

        @app.get("/api/v1/namespaces/{namespace}/pods")
        def list_pods(namespace: str, labelSelector: str = "") -> dict[str, Any]:
            self.namespaces_listed.append(namespace)
            wanted = dict(term.split("=", 1) for term in labelSelector.split(",") if term)
            items = [
                pod.document(self.looks)
                for pod in self.pods.values()
                if namespace == NAMESPACE and wanted.items() <= pod.labels().items()
            ]
            return {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items}

        @app.delete("/api/v1/namespaces/{namespace}/pods/{name}")
        def delete_pod(namespace: str, name: str) -> dict[str, Any]:
            if namespace != NAMESPACE or name not in self.pods:
                raise HTTPException(404, f'pods "{name}" not found')
            return self.delete(name).document(self.looks)

        return app


@pytest.fixture
def fake_api_server() -> Iterator[tuple[str, FakeCluster]]:
    cluster = FakeCluster()
    port = free_port_block(1)
    server = uvicorn.Server(
        uvicorn.Config(cluster.app(), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "fake API server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", cluster
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def invoke(*args: str) -> Any:
    return CliRunner().invoke(k8s_app, list(args))


def mutualis(*args: str, stdin: str | None = None) -> Any:
    """The `mutualis` command line itself (the local drill's entry point)."""
    return CliRunner().invoke(app, list(args), input=stdin)


def test_status_shows_every_service_ready_in_every_zone_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, _ = fake_api_server
    result = invoke("status", "--server", url, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["zones"] == list(ZONES)
    assert report["services"] == {s: {z: "1/1" for z in ZONES} for s in KNOWN_SERVICES}
    assert (report["nats_ready"], report["nats_total"]) == (3, 3)
    assert report["healthy"] is True
    table = invoke("status", "--server", url)
    assert "healthy" in table.output
    assert "parapheur" in table.output


def test_status_names_the_zone_where_a_service_is_not_ready_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    [archive_dc3] = [p for p in cluster.pods.values() if p.role == "archive" and "dc3" in p.node]
    archive_dc3.ready_at = 10**9
    result = invoke("status", "--server", url, "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["missing"] == {"archive": ["dc3"]}
    assert report["services"]["archive"]["dc3"] == "0/1"


def test_drill_deletes_one_zone_and_measures_the_recovery_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    in_dc2 = sorted(p.name for p in cluster.pods.values() if "dc2" in p.node)
    result = invoke(
        "drill", "--kill-zone", "dc2", "--server", url, "--poll", "0", "--yes", "--json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert sorted(cluster.deleted) == in_dc2
    assert sorted(report["deleted"]) == in_dc2
    assert len(in_dc2) == len(KNOWN_SERVICES) + 1, "every service and the zone's NATS server"
    assert report["services_available_after_s"] is not None
    assert report["zone_recovered_after_s"] is not None
    assert report["outages"] == {}, "the other zones kept every service up"
    assert report["after"]["healthy"] is True
    assert report["ok"] is True
    assert report["targets"]["zone_recovered"] is True
    after = {p["name"]: p for p in report["after"]["pods"]}
    assert f"{RELEASE}-nats-1" in after, "the StatefulSet pod came back under its name"


def test_a_zone_that_never_comes_back_fails_the_drill_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    cluster.replacement_delay = None
    virtual = [0.0]

    def sleep(seconds: float) -> None:
        virtual[0] += seconds

    report = kill_zone(
        core_api(server=url),
        NAMESPACE,
        RELEASE,
        "dc1",
        timeout_s=30,
        poll_s=5,
        clock=lambda: virtual[0],
        sleep=sleep,
    )
    assert report.ok is False
    assert report.zone_recovered_after_s is None
    assert report.targets["zone_recovered"] is False
    assert report.timeline[-1].what == "gave up after 30 s: zone dc1 not whole again"
    assert report.services_available_after_s is not None, "dc2 and dc3 still serve"
    assert sorted(report.after.missing) == sorted(KNOWN_SERVICES)


def test_drill_refuses_an_unknown_zone_or_a_degraded_platform_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    result = invoke("drill", "--kill-zone", "dc9", "--server", url, "--yes")
    assert result.exit_code == 1
    assert cluster.deleted == []
    next(p for p in cluster.pods.values() if p.role == "nats").ready_at = 10**9
    with pytest.raises(DrillRefused, match="already degraded"):
        kill_zone(core_api(server=url), NAMESPACE, RELEASE, "dc1")
    assert cluster.deleted == []
    assert observe(core_api(server=url), NAMESPACE, RELEASE).nats_ready == 2


def test_drill_kubernetes_kill_zone_reports_like_the_local_drill_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster], tmp_path: Path
) -> None:
    url, cluster = fake_api_server
    in_dc2 = sorted(p.name for p in cluster.pods.values() if "dc2" in p.node)
    report_file = tmp_path / "drill.json"
    result = mutualis(
        "drill",
        "--kubernetes",
        "--kill-zone",
        "dc2",
        "--server",
        url,
        "--namespace",
        NAMESPACE,
        "--release",
        RELEASE,
        "--poll",
        "0",
        "--yes",
        "--json",
        str(report_file),
    )
    assert result.exit_code == 0, result.output
    assert sorted(cluster.deleted) == in_dc2
    report = json.loads(report_file.read_text())
    # The local drill's frame: the fault, a timeline, targets met or not.
    assert report["fault"] == "--kill-zone dc2"
    assert report["platform"] == "kubernetes"
    events = [event["what"] for event in report["timeline"]]
    assert events[0] == f"deleted {len(in_dc2)} pods in zone dc2"
    assert "every service ready outside dc2" in events
    assert events[-1] == "zone dc2 whole again"
    assert [e["at_s"] for e in report["timeline"]] == sorted(e["at_s"] for e in report["timeline"])
    assert report["targets"] == {
        "no_service_outage": True,
        "rto_below_8s": True,
        "zone_recovered": True,
    }
    # What needs a workload is said to be missing, never reported as zero.
    assert set(report["not_measured"]) == set(NOT_MEASURED)
    assert "acknowledged_but_lost" not in report
    assert "duplicates" not in report
    for line in ("fault", "longest outage", "not measured", "target zone_recovered"):
        assert line in result.output, line
    assert "\nrecovered\n" in result.output
    assert f"report written to {report_file}" in result.output


def test_drill_kubernetes_reports_a_service_without_any_ready_pod_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    """While dc2 is down, archive's pods in the other zones fail their readiness for a while."""
    url, cluster = fake_api_server

    def archive_flaps(fake: FakeCluster) -> None:
        for pod in fake.pods.values():
            if pod.role == "archive" and "dc2" not in pod.node:
                pod.ready_at = max(pod.ready_at, fake.looks + 2)

    cluster.after_delete = archive_flaps
    result = mutualis(
        "drill", "--kubernetes", "--kill-zone", "dc2", "--server", url, "--poll", "0", "-y"
    )
    assert result.exit_code == 0, "the zone recovered: the outage is a target, not an exit code"
    assert "target no_service_outage" in result.output
    assert "not met" in result.output
    assert "archive has no ready pod anywhere" in result.output
    assert "archive ready again" in result.output


def test_drill_kubernetes_asks_before_deleting_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    args = ("drill", "--kubernetes", "--kill-zone", "dc1", "--server", url, "--poll", "0")
    refused = mutualis(*args, stdin="n\n")
    assert refused.exit_code == 1
    assert "delete every pod of release mutualis in zone dc1?" in refused.output
    assert cluster.deleted == []
    accepted = mutualis(*args, stdin="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert len(cluster.deleted) == len(KNOWN_SERVICES) + 1


def test_drill_kubernetes_looks_in_the_namespace_it_is_given_against_a_fake_api_server(
    fake_api_server: tuple[str, FakeCluster],
) -> None:
    url, cluster = fake_api_server
    result = mutualis(
        "drill", "--kubernetes", "--kill-zone", "dc1", "--server", url, "-n", "elsewhere", "-y"
    )
    assert result.exit_code == 1, "no release there: refused as degraded"
    assert set(cluster.namespaces_listed) == {"elsewhere"}
    assert cluster.deleted == []


@pytest.mark.parametrize(
    "args",
    [
        ("--kill-zone", "dc1"),
        ("--kubernetes",),
        ("--kubernetes", "--kill-zone", "dc1", "--kill", "dc1"),
    ],
    ids=["kill-zone-alone", "kubernetes-without-zone", "with-a-local-fault"],
)
def test_drill_kubernetes_needs_kill_zone_and_no_local_fault(args: tuple[str, ...]) -> None:
    result = mutualis("drill", *args, "--yes")
    assert result.exit_code == 2
    assert "--kubernetes --kill-zone ZONE" in result.output
