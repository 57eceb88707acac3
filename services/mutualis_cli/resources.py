"""Applying the JetStream resources of the kernel and of every installed service.

Idempotent: `apply_resources` creates what is missing and updates what changed, so `up` runs
it every time and `mutualis streams apply` can run it by hand after an upgrade.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import nats.errors
import nats.js.errors

from mutualis_cli.target import connect
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KERNEL_RESOURCES, ApplyReport, Resources, apply_resources


def platform_resources(manifests: Sequence[ServiceManifest]) -> list[Resources]:
    return [KERNEL_RESOURCES, *(m.resources for m in manifests)]


async def apply_platform_resources(
    urls: list[str],
    manifests: Sequence[ServiceManifest],
    replicas: int,
    *,
    patience_s: float = 90.0,
) -> ApplyReport:
    """Apply, retrying while the cluster is still recovering its streams.

    A cluster restarted on existing data elects its meta leader within a second but takes
    longer to recover every stream and consumer; JetStream API calls time out meanwhile.
    """
    nc = await connect(urls)
    deadline = asyncio.get_running_loop().time() + patience_s
    try:
        js = nc.jetstream(timeout=10.0)
        while True:
            try:
                return await apply_resources(js, platform_resources(manifests), replicas=replicas)
            except (nats.errors.TimeoutError, nats.js.errors.ServiceUnavailableError):
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(1.0)
    finally:
        await nc.close()


def report_lines(report: ApplyReport) -> list[str]:
    return (
        [f"created    {item}" for item in report.created]
        + [f"updated    {item}" for item in report.updated]
        + [f"unchanged  {item}" for item in report.unchanged]
    )
