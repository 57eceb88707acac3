"""A real network partition for the chaos tests: each datacenter in a network namespace.

Every datacenter's NATS node runs in a namespace of its own, attached to one bridge (in a
"hub" namespace) by a veth pair; the test process reaches them through one more veth from the
host. A partition of a datacenter is a pair of blackhole routes on each side between it and
every other datacenter: TCP connections between them go silent, as when a fibre is cut, while
the host (the test, standing for the clients in that datacenter) still reaches every node.
Nothing listens outside these private namespaces; they vanish with the fixture.

Needs root and `ip` with network namespaces; `available()` says why not otherwise.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field


class NamespacesUnavailable(RuntimeError):
    pass


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NamespacesUnavailable(f"ip {' '.join(args)}: {done.stderr.strip()}")


@dataclass
class DatacenterNetworks:
    """One namespace per datacenter on a private /24, plus the host's way in."""

    datacenters: Sequence[str]
    tag: str = field(default_factory=lambda: f"{os.getpid() % 10000:04d}")
    created: list[str] = field(default_factory=list)

    @property
    def subnet(self) -> str:
        # 10.213.<20..219>: one subnet per test process, clear of the usual private ranges.
        return f"10.213.{20 + int(self.tag) % 200}"

    @property
    def hub(self) -> str:
        return f"mutualis{self.tag}-hub"

    def namespace(self, datacenter: str) -> str:
        return f"mutualis{self.tag}-{datacenter}"

    def address(self, datacenter: str) -> str:
        return f"{self.subnet}.{list(self.datacenters).index(datacenter) + 1}"

    def _veth(self, index: int | str, side: str) -> str:
        return f"mx{self.tag}{index}{side}"  # at most 15 characters

    def placement(self) -> tuple[tuple[str, str, str], ...]:
        """For `Topology(namespaces=...)`."""
        return tuple((dc, self.namespace(dc), self.address(dc)) for dc in self.datacenters)

    def create(self) -> None:
        _ip("netns", "add", self.hub)
        self.created.append(self.hub)
        _ip("-n", self.hub, "link", "add", "br0", "type", "bridge")
        _ip("-n", self.hub, "link", "set", "br0", "up")
        for index, dc in enumerate(self.datacenters):
            namespace = self.namespace(dc)
            _ip("netns", "add", namespace)
            self.created.append(namespace)
            inside, outside = self._veth(index, "a"), self._veth(index, "b")
            _ip("link", "add", inside, "netns", namespace, "type", "veth", "peer", "name",
                outside, "netns", self.hub)  # fmt: skip
            _ip("-n", namespace, "link", "set", "lo", "up")
            _ip("-n", namespace, "addr", "add", f"{self.address(dc)}/24", "dev", inside)
            _ip("-n", namespace, "link", "set", inside, "up")
            _ip("-n", self.hub, "link", "set", outside, "master", "br0", "up")
        host, hub_side = self._veth("h", "a"), self._veth("h", "b")
        _ip("link", "add", host, "type", "veth", "peer", "name", hub_side, "netns", self.hub)
        _ip("addr", "add", f"{self.subnet}.200/24", "dev", host)
        _ip("link", "set", host, "up")
        _ip("-n", self.hub, "link", "set", hub_side, "master", "br0", "up")

    def _routes(self, datacenter: str, action: str) -> None:
        for other in self.datacenters:
            if other == datacenter:
                continue
            _ip("-n", self.namespace(datacenter), "route", action, "blackhole",
                f"{self.address(other)}/32")  # fmt: skip
            _ip("-n", self.namespace(other), "route", action, "blackhole",
                f"{self.address(datacenter)}/32")  # fmt: skip

    def partition(self, datacenter: str) -> None:
        """Cut `datacenter` off from every other one (not from the host)."""
        self._routes(datacenter, "add")

    def heal(self, datacenter: str) -> None:
        self._routes(datacenter, "del")

    def destroy(self) -> None:
        # Deleting the hub takes the host's veth with it (a pair dies with either end).
        for namespace in reversed(self.created):
            subprocess.run(["ip", "netns", "del", namespace], capture_output=True, check=False)
        self.created.clear()


def available() -> str | None:
    """None when this machine has what `DatacenterNetworks.create` uses (root, `ip`, network
    namespaces, the kernel's veth and bridge links), else what it lacks.

    Everything the setup needs from the machine is probed here, so that a setup failing
    afterwards is a failure of ours, not a reason to skip.
    """
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"mutualis-probe-{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (NamespacesUnavailable, FileNotFoundError) as error:
        return f"cannot create a network namespace: {error}"
    try:
        _ip("-n", probe, "link", "add", "probe0", "type", "bridge")
        _ip("-n", probe, "link", "add", "probe1", "type", "veth", "peer", "name", "probe2")
    except NamespacesUnavailable as error:
        return f"the kernel lacks bridge or veth links: {error}"
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None
