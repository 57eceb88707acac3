"""Which NATS servers a command talks to, and a quiet connection to them.

The servers come from `--nats-url` when given, else from the state file `mutualis up` wrote in
the run dir. Connections fail fast and never print reconnect tracebacks: an operator tool
reports a dead datacenter, it does not drown in it.
"""

from __future__ import annotations

from pathlib import Path

import nats
from nats.aio.client import Client

from mutualis_cli.rundir import RunState, load_state


class NoTarget(RuntimeError):
    pass


def resolve(run_dir: Path, nats_urls: list[str] | None) -> tuple[list[str], RunState | None]:
    """The servers to use and the run state (None when nothing was started in the run dir)."""
    state = load_state(run_dir)
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


async def connect(urls: list[str], *, timeout: float = 2.0) -> Client:
    """Connect to the first server that answers; raise `NoTarget` when none does."""
    try:
        return await nats.connect(
            servers=urls,
            connect_timeout=timeout,
            max_reconnect_attempts=2,
            reconnect_time_wait=0.2,
            dont_randomize=True,
            error_cb=_ignore,
        )
    except (OSError, TimeoutError, nats.errors.Error) as error:
        raise NoTarget(f"no NATS server answers at {', '.join(urls)}: {error!r}") from None
