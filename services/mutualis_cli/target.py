"""Which NATS servers a command talks to, and a quiet connection to them.

The servers come from `--nats-url` when given, else from the state file `mutualis up` wrote in
the run dir. So do the credentials: the dev CA and the `operator` nkey `up` made, unless
`MUTUALIS_NATS_TLS_CA_FILE` / `MUTUALIS_NATS_NKEY_SEED_FILE` name others (a platform this
process did not start). A command talks to one platform, so the identity found by `resolve`
is kept for the process. Connections fail fast and never print reconnect tracebacks: an
operator tool reports a dead datacenter, it does not drown in it.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from mutualis_cli.rundir import RunState, load_state
from mutualis_kernel.bus import connection as _connection  # noqa: F401 - quiets TLS closes


@dataclass(frozen=True)
class ClientIdentity:
    """How this process proves itself to NATS and checks the servers."""

    tls_ca_file: Path | None = None
    nkey_seed_file: Path | None = None

    def connect_options(self) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if self.tls_ca_file is not None:
            options["tls"] = ssl.create_default_context(cafile=str(self.tls_ca_file))
        if self.nkey_seed_file is not None:
            options["nkeys_seed"] = str(self.nkey_seed_file)
        return options


def _from_environment() -> ClientIdentity:
    ca = os.environ.get("MUTUALIS_NATS_TLS_CA_FILE")
    seed = os.environ.get("MUTUALIS_NATS_NKEY_SEED_FILE")
    return ClientIdentity(Path(ca) if ca else None, Path(seed) if seed else None)


_identity: ClientIdentity | None = None


def identity_of(state: RunState) -> ClientIdentity:
    return ClientIdentity(state.tls_ca_file, state.operator_seed_file)


def use_identity(identity: ClientIdentity) -> None:
    """Connect as `identity` from now on (set by `resolve` and by `up` itself)."""
    global _identity
    _identity = identity


def current_identity() -> ClientIdentity:
    return _identity if _identity is not None else _from_environment()


class NoTarget(RuntimeError):
    pass


def resolve(run_dir: Path, nats_urls: list[str] | None) -> tuple[list[str], RunState | None]:
    """The servers to use and the run state (None when nothing was started in the run dir)."""
    state = load_state(run_dir)
    environment = _from_environment()
    if environment.tls_ca_file or environment.nkey_seed_file:
        use_identity(environment)
    elif state is not None:
        use_identity(identity_of(state))
    if nats_urls:
        return list(nats_urls), state
    if state is None or not state.nodes:
        raise NoTarget(
            f"nothing is running from {run_dir} (no {run_dir}/state.json): "
            "start the platform with `mutualis up`, or pass --nats-url"
        )
    return state.client_urls, state


async def _ignore(_: Exception) -> None:
    return None


async def connect(urls: list[str], *, timeout: float = 2.0, **options: Any) -> Client:
    """Connect to the first server that answers; raise `NoTarget` when none does."""
    settings: dict[str, Any] = {
        "connect_timeout": timeout,
        "max_reconnect_attempts": 2,
        "reconnect_time_wait": 0.2,
        "dont_randomize": True,
        "error_cb": _ignore,
        **current_identity().connect_options(),
        **options,
    }
    try:
        return await nats.connect(servers=urls, **settings)
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise NoTarget(f"no NATS server answers at {', '.join(urls)}: {error!r}") from None
