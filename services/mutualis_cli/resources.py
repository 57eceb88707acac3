"""Applying the JetStream resources of the kernel and of every installed service.

Idempotent: `apply_resources` creates what is missing and updates what changed, so `up` runs
it every time and `mutualis streams apply` can run it by hand after an upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence

from mutualis_cli.target import connect
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import (
    KERNEL_RESOURCES,
    ApplyReport,
    Resources,
    apply_resources_patiently,
)


def platform_resources(manifests: Sequence[ServiceManifest]) -> list[Resources]:
    return [KERNEL_RESOURCES, *(m.resources for m in manifests)]


async def apply_platform_resources(
    urls: list[str],
    manifests: Sequence[ServiceManifest],
    replicas: int,
    *,
    patience_s: float = 90.0,
) -> ApplyReport:
    """Apply, retrying while the cluster is still settling (the kernel's patient apply).

    A cluster just started (or restarted on existing data) elects its meta leader within a
    second but may not yet place a stream on every datacenter, or recover every stream.
    """
    nc = await connect(urls)
    try:
        return await apply_resources_patiently(
            nc.jetstream(timeout=10.0),
            platform_resources(manifests),
            replicas,
            patience_s=patience_s,
        )
    finally:
        await nc.close()


def report_lines(report: ApplyReport) -> list[str]:
    return (
        [f"created    {item}" for item in report.created]
        + [f"updated    {item}" for item in report.updated]
        + [f"unchanged  {item}" for item in report.unchanged]
    )
