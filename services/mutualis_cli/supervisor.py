"""Process supervision: launch service instances, wait for readiness, follow logs, stop by pid.

Everything here works from pids, not from `Popen` handles, so `mutualis down` in another
terminal stops processes exactly as the `up` that started them does. Processes are started in
their own session, so a Ctrl-C in the terminal reaches only the supervisor, which then stops
them in order. It knows nothing of NATS or JetStream.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

SERVICE_STOP_TIMEOUT_S = 10.0
NATS_STOP_TIMEOUT_S = 15.0


# -- liveness -------------------------------------------------------------------------------
def _reap(pid: int) -> None:
    # Our own children stay zombies (and look alive) until waited for.
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def process_alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting for a parent that never reaps."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no procfs: trust kill(0)
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state not in ("Z", "X")


def process_matches(pid: int, marker: str) -> bool:
    """Whether the pid still runs what we started (pids are reused after a reboot or long wait)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return process_alive(pid)
    return marker.encode() in cmdline


def stop_process(pid: int, marker: str, timeout: float) -> bool:
    """SIGTERM, wait up to `timeout`, then SIGKILL. Return whether it had to be killed."""
    if not process_alive(pid) or not process_matches(pid, marker):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGCONT)  # a frozen (SIGSTOPped) process cannot handle SIGTERM
        os.kill(pid, signal.SIGTERM)
    if wait_gone([pid], timeout):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    wait_gone([pid], 5.0)
    return True


def stop_processes(targets: Iterable[tuple[int, str]], timeout: float) -> list[int]:
    """Stop several processes at once (SIGTERM to all, then wait); return the pids killed."""
    live = [(pid, m) for pid, m in targets if process_alive(pid) and process_matches(pid, m)]
    for pid, _ in live:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
            os.kill(pid, signal.SIGTERM)
    wait_gone([pid for pid, _ in live], timeout)
    killed = []
    for pid, _ in live:
        if process_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.append(pid)
    wait_gone(killed, 5.0)
    return killed


def wait_gone(pids: Iterable[int], timeout: float) -> bool:
    remaining = list(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = [pid for pid in remaining if process_alive(pid)]
        if not remaining:
            break
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


# -- service instances ----------------------------------------------------------------------
@dataclass(frozen=True)
class ServiceLaunch:
    """One instance of a service: `python -m <module>` with its settings in the environment."""

    name: str
    datacenter: str
    port: int
    nats_urls: list[str]
    replicas: int
    log_path: Path
    data_dir: Path
    host: str = "127.0.0.1"
    #: Settings shared across the platform (issuer, timestamp authority, mail relay…).
    shared_env: Mapping[str, str] = field(default_factory=dict)
    #: What to run with `python -m` (default: the service's package) and its arguments.
    module: str | None = None
    args: tuple[str, ...] = ()
    #: The path that answers 200 once the instance can serve.
    ready_path: str = "/readyz"

    @property
    def label(self) -> str:
        return f"{self.name}@{self.datacenter}"

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self, base: Mapping[str, str]) -> dict[str, str]:
        env = dict(base)
        env.update(self.shared_env)
        env.update(
            {
                "MUTUALIS_SERVICE_NAME": self.name,
                "MUTUALIS_HTTP_HOST": self.host,
                "MUTUALIS_HTTP_PORT": str(self.port),
                "MUTUALIS_NATS_URLS": json.dumps(self.nats_urls),
                "MUTUALIS_DATACENTER": self.datacenter,
                "MUTUALIS_DEV_MODE": "true",
                "MUTUALIS_STREAM_REPLICAS": str(self.replicas),
                "MUTUALIS_DATA_DIR": str(self.data_dir),
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def start(self) -> int:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", self.module or self.name, *self.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(os.environ),
                start_new_session=True,
            )
        return process.pid


class ServiceNotReady(RuntimeError):
    pass


def ready(url: str, timeout: float = 1.0, path: str = "/readyz") -> bool:
    try:
        response = httpx.get(f"{url}{path}", timeout=timeout)
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def wait_ready(
    label: str, url: str, pid: int, log_path: Path, timeout: float, path: str = "/readyz"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not process_alive(pid):
            raise ServiceNotReady(
                f"{label} exited during start; last lines of {log_path}:\n" + tail_lines(log_path)
            )
        if ready(url, timeout=0.5, path=path):
            return
        time.sleep(0.1)
    raise ServiceNotReady(f"{label} not ready at {url}{path} after {timeout:.0f}s; see {log_path}")


def tail_lines(path: Path, count: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-count:])
    except OSError:
        return ""


# -- logs -----------------------------------------------------------------------------------
class LogFollower:
    """Follows several log files from their current end, handing out complete new lines."""

    def __init__(self, files: Mapping[str, Path]) -> None:
        self._files = dict(files)
        self._offsets = {label: _size(path) for label, path in self._files.items()}
        self._partial: dict[str, str] = dict.fromkeys(self._files, "")

    def poll(self, emit: Callable[[str, str], None]) -> None:
        for label, path in self._files.items():
            size = _size(path)
            offset = self._offsets[label]
            if size < offset:  # truncated or replaced: start again
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
            self._offsets[label] = offset + len(chunk)
            text = self._partial[label] + chunk.decode(errors="replace")
            *lines, self._partial[label] = text.split("\n")
            for line in lines:
                emit(label, line)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0
