"""Liveness and readiness endpoints, and the readiness check every NATS-backed service shares.

Owns `/healthz` (the process answers) and `/readyz` (its dependencies answer, each within a
bound so a hung dependency turns into a 503, never a hung probe). A check is a coroutine
function returning None when healthy or a short reason; it must not change any state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Literal

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import ClusterInfo
from nats.js.errors import NotFoundError
from pydantic import BaseModel

ReadinessCheck = Callable[[], Awaitable[str | None]]

#: How long one check may take before the dependency counts as not ready.
CHECK_TIMEOUT_S = 1.0


class Liveness(BaseModel):
    status: Literal["alive"] = "alive"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    checks: dict[str, str]


async def _run_check(check: ReadinessCheck, timeout_s: float) -> str | None:
    try:
        return await asyncio.wait_for(check(), timeout_s)
    except TimeoutError:
        return f"no answer within {timeout_s:g}s"
    except Exception as error:  # noqa: BLE001 - any failure of a dependency means "not ready"
        return f"{type(error).__name__}: {error}" if str(error) else type(error).__name__


async def readiness(
    checks: Mapping[str, ReadinessCheck], timeout_s: float = CHECK_TIMEOUT_S
) -> Readiness:
    """Run every check concurrently, each bounded by `timeout_s`."""
    names = list(checks)
    reasons = await asyncio.gather(*(_run_check(checks[n], timeout_s) for n in names))
    results = {name: reason or "ok" for name, reason in zip(names, reasons, strict=True)}
    ready = all(reason is None for reason in reasons)
    return Readiness(status="ready" if ready else "not ready", checks=results)


def health_router(
    checks: Mapping[str, ReadinessCheck], *, timeout_s: float = CHECK_TIMEOUT_S
) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get("/healthz", response_model=Liveness)
    async def healthz() -> Liveness:
        return Liveness()

    @router.get(
        "/readyz",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "A dependency is not ready"}},
    )
    async def readyz() -> JSONResponse:
        result = await readiness(checks, timeout_s)
        status = 200 if result.status == "ready" else 503
        return JSONResponse(result.model_dump(), status_code=status)

    return router


def nats_readiness(
    nc_getter: Callable[[], NATS | None],
    js_getter: Callable[[], JetStreamContext | None],
    streams: list[str],
) -> ReadinessCheck:
    """Ready while NATS is connected and every named stream answers and has a leader.

    Getters rather than clients because the service connects in its lifespan, after the app
    is built. A stream without a leader, or whose leader no longer hears from a majority of
    its replicas, cannot take writes: the instance leaves the load balancer until the cluster
    has its quorum back.
    """

    async def check() -> str | None:
        nc = nc_getter()
        if nc is None or not nc.is_connected:
            return "nats not connected"
        js = js_getter()
        if js is None:
            return "jetstream context not ready"
        for name in streams:
            try:
                info = await js.stream_info(name)
            except NotFoundError:
                return f"stream {name} not found"
            problem = _quorum_problem(name, info.cluster)
            if problem:
                return problem
        return None

    return check


def _quorum_problem(stream: str, cluster: ClusterInfo | None) -> str | None:
    if cluster is None or not cluster.name:
        return None  # a single server: no quorum to lose
    if not cluster.leader:
        return f"stream {stream} has no leader"
    # The leader marks a follower not `current` about 10 s after losing it, while it only
    # steps down after about 20 s: counting current replicas notices the loss sooner.
    followers = cluster.replicas or []
    current = 1 + sum(1 for peer in followers if peer.current and not peer.offline)
    size = 1 + len(followers)
    if current < size // 2 + 1:
        return f"stream {stream} has lost its quorum ({current} of {size} replicas current)"
    return None
