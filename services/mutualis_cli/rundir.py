"""The run directory and its state file: what `mutualis up` started, for every later command.

`<run-dir>/state.json` lists the NATS nodes and service instances (pids, ports, URLs) and the
topology, so `status`, `down`, `dlq` or `events tail` run from another terminal find the
platform. The NATS stores (`nats/`) and service data (`services/`) stay between runs; only
`mutualis reset` deletes them. This module does no process control and no network I/O.
"""

from __future__ import annotations

import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

DEFAULT_RUN_DIR = Path(".mutualis")
STATE_FILE = "state.json"

#: What `reset` deletes: everything `up` writes, and nothing else it might find in the dir.
_DATA_ENTRIES = ("nats", "services", "logs", STATE_FILE)


class NodeState(BaseModel):
    name: str
    datacenter: str
    client_url: str
    monitor_url: str
    client_port: int
    monitor_port: int
    cluster_port: int
    pid: int | None = None


class ServiceState(BaseModel):
    name: str
    datacenter: str
    port: int
    url: str
    pid: int | None = None
    log_path: str
    ready_path: str = "/readyz"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.datacenter}"


class TopologyState(BaseModel):
    datacenters: list[str]
    replicas: int
    client_port_base: int
    monitor_port_base: int
    cluster_port_base: int
    service_port_base: int
    ha: bool = False
    #: Client TLS and mutual TLS on routes, with the dev CA under `nats/tls/`.
    tls: bool = False
    #: Every client authenticates with an nkey (seeds under `nats/credentials/`).
    nkeys: bool = False


class RunState(BaseModel):
    """The contents of `state.json`."""

    run_dir: str
    started_at: datetime = Field(default_factory=lambda: datetime.now(UTC))
    #: The `up` process that supervises everything, when it was not started with --detach.
    supervisor_pid: int | None = None
    topology: TopologyState
    nodes: list[NodeState] = Field(default_factory=list)
    services: list[ServiceState] = Field(default_factory=list)

    @property
    def client_urls(self) -> list[str]:
        return [n.client_url for n in self.nodes]

    @property
    def tls_ca_file(self) -> Path | None:
        """The CA the NATS servers' certificates chain to, when `up` turned TLS on."""
        return tls_dir(Path(self.run_dir)) / "ca.pem" if self.topology.tls else None

    @property
    def operator_seed_file(self) -> Path | None:
        """The nkey seed the command line authenticates with, when `up` required nkeys."""
        return credentials_dir(Path(self.run_dir)) / "operator.nk" if self.topology.nkeys else None

    def datacenter_of(self, server_name: str) -> str | None:
        for node in self.nodes:
            if node.name == server_name:
                return node.datacenter
        return None


class StateUnreadable(RuntimeError):
    pass


def tls_dir(run_dir: Path) -> Path:
    return run_dir / "nats" / "tls"


def credentials_dir(run_dir: Path) -> Path:
    return run_dir / "nats" / "credentials"


def state_path(run_dir: Path) -> Path:
    return run_dir / STATE_FILE


def load_state(run_dir: Path) -> RunState | None:
    """The state `up` left in the run dir, or None when nothing was started there."""
    path = state_path(run_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return RunState.model_validate_json(text)
    except ValidationError as error:
        raise StateUnreadable(
            f"{path} is not a state file this version understands: {error}"
        ) from None


def save_state(state: RunState) -> None:
    """Write atomically, so a reader in another terminal never sees half a file."""
    path = state_path(Path(state.run_dir))
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
    os.replace(temporary, path)


def remove_state(run_dir: Path) -> None:
    state_path(run_dir).unlink(missing_ok=True)


def wipe_data(run_dir: Path) -> list[Path]:
    """Delete what `up` wrote in the run dir (stores, logs, state); return what was deleted."""
    removed = []
    for entry in _DATA_ENTRIES:
        path = run_dir / entry
        if path.is_dir():
            shutil.rmtree(path)
            removed.append(path)
        elif path.exists():
            path.unlink()
            removed.append(path)
    if run_dir.is_dir() and not any(run_dir.iterdir()):
        run_dir.rmdir()
    return removed
