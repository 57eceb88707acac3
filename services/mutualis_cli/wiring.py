"""How the locally started services find each other: the settings they share.

In a deployment these come from Helm values; here `mutualis up` derives them from the ports it
chose, so identity's issuer URL, the timestamp authority and the mail sinks line up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from mutualis_cli.supervisor import ServiceLaunch

#: Development-only secrets: the kernel refuses such values outside dev mode.
DEV_KEY_ENCRYPTION_SECRET = "dev-only-identity-key-encryption"  # noqa: S105 - dev mode only


def shared_environment(run_dir: Path, launches: Sequence[ServiceLaunch]) -> dict[str, str]:
    env: dict[str, str] = {}
    identity = next((launch for launch in launches if launch.name == "identity"), None)
    if identity is not None:
        # Every identity instance signs as the same issuer: in --ha the first datacenter's
        # address stands for the load balancer a deployment puts in front of them.
        env["MUTUALIS_ISSUER"] = identity.url
        env["MUTUALIS_ISSUER_URL"] = identity.url
        env["MUTUALIS_KEY_ENCRYPTION_SECRET"] = DEV_KEY_ENCRYPTION_SECRET
    return env


def with_shared_environment(
    run_dir: Path, launches: Sequence[ServiceLaunch]
) -> list[ServiceLaunch]:
    env = shared_environment(run_dir, launches)
    return [replace(launch, shared_env={**env, **launch.shared_env}) for launch in launches]
