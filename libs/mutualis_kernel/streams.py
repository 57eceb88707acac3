"""Declarative JetStream resources: streams, key-value buckets and object stores.

Services declare what they need as specs; `apply_resources` creates or updates them
idempotently with the replica count of the topology (3 = one replica per datacenter,
enforced by the servers' `unique_tag: "dc:"`; 1 on a single node).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, TypeVar

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import APIError, BadRequestError, NotFoundError, ServiceUnavailableError

from mutualis_kernel.events.subjects import SubjectFilter

DAY = 24 * 3600.0


@dataclass(frozen=True)
class StreamSpec:
    name: str
    subjects: tuple[str, ...]
    description: str
    max_age_s: float = 0.0  # 0: kept forever (the system of record)
    duplicate_window_s: float = 3600.0
    retention: Literal["limits", "workqueue", "interest"] = "limits"
    allow_msg_ttl: bool = False
    max_msg_size: int = 1024 * 1024
    #: For append-only evidence (an archive journal): the server itself refuses deleting a
    #: message or purging the stream, whoever asks.
    deny_delete: bool = False
    deny_purge: bool = False

    def config(self, replicas: int) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=list(self.subjects),
            description=self.description,
            retention=RetentionPolicy(self.retention),
            storage=StorageType.FILE,
            num_replicas=replicas,
            max_age=self.max_age_s,
            duplicate_window=self.duplicate_window_s,
            max_msg_size=self.max_msg_size,
            discard=DiscardPolicy.OLD,
            allow_direct=True,
            allow_msg_ttl=self.allow_msg_ttl or None,
            deny_delete=self.deny_delete,
            deny_purge=self.deny_purge,
        )


@dataclass(frozen=True)
class KeyValueSpec:
    bucket: str
    description: str
    history: int = 1
    ttl_s: float | None = None

    def config(self, replicas: int) -> KeyValueConfig:
        return KeyValueConfig(
            bucket=self.bucket,
            description=self.description,
            history=self.history,
            ttl=self.ttl_s,
            storage=StorageType.FILE,
            replicas=replicas,
        )


@dataclass(frozen=True)
class ObjectStoreSpec:
    bucket: str
    description: str

    def config(self, replicas: int) -> ObjectStoreConfig:
        return ObjectStoreConfig(
            bucket=self.bucket,
            description=self.description,
            storage=StorageType.FILE,
            replicas=replicas,
        )


@dataclass(frozen=True)
class Resources:
    """What one component needs from JetStream."""

    streams: tuple[StreamSpec, ...] = ()
    key_values: tuple[KeyValueSpec, ...] = ()
    object_stores: tuple[ObjectStoreSpec, ...] = ()

    def __add__(self, other: Resources) -> Resources:
        return Resources(
            self.streams + other.streams,
            self.key_values + other.key_values,
            self.object_stores + other.object_stores,
        )


def events_stream(service: str, description: str) -> StreamSpec:
    """The stream that is a service's system of record: every event it publishes, forever."""
    return StreamSpec(
        name=f"{service.upper()}_EVENTS",
        subjects=(SubjectFilter.service(service),),
        description=description,
    )


DEAD_LETTER_STREAM = "DEAD_LETTERS"
REPLAY_STREAM = "REPLAYS"

#: What the kernel itself needs: the dead-letter stream (kept 90 days for investigation) and
#: the replay stream through which an operator sends a fixed message back to one consumer.
KERNEL_RESOURCES = Resources(
    streams=(
        StreamSpec(
            name=DEAD_LETTER_STREAM,
            subjects=("dlq.>",),
            description="Messages a consumer could not handle, with the reason and headers.",
            max_age_s=90 * DAY,
            duplicate_window_s=120.0,
        ),
        StreamSpec(
            name=REPLAY_STREAM,
            subjects=("replay.>",),
            description="Dead-lettered messages sent back to one consumer after a fix.",
            max_age_s=7 * DAY,
            duplicate_window_s=120.0,
        ),
    )
)


@dataclass
class ApplyReport:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


async def apply_resources(
    js: JetStreamContext, resources: Resources | Iterable[Resources], replicas: int
) -> ApplyReport:
    """Create what is missing and update what changed; safe to run again and again."""
    total = resources if isinstance(resources, Resources) else sum(resources, Resources())
    report = ApplyReport()
    for stream in total.streams:
        await _apply_stream(js, stream.config(replicas), report)
    for kv in total.key_values:
        await _apply_stream(js, _kv_stream_config(kv, replicas), report)
    for obj in total.object_stores:
        try:
            await js.object_store(obj.bucket)
            report.unchanged.append(f"object store {obj.bucket}")
        except NotFoundError:
            await js.create_object_store(bucket=obj.bucket, config=obj.config(replicas))
            report.created.append(f"object store {obj.bucket}")
    return report


def _kv_stream_config(spec: KeyValueSpec, replicas: int) -> StreamConfig:
    # A KV bucket is a stream named KV_<bucket>; creating it through create_key_value the
    # first time and comparing stream configs afterwards keeps one code path for updates.
    return StreamConfig(
        name=f"KV_{spec.bucket}",
        description=spec.description,
        subjects=[f"$KV.{spec.bucket}.>"],
        allow_rollup_hdrs=True,
        deny_delete=True,
        # Reads go to the leader: a follower answering a direct get may not have applied a
        # write that was just acknowledged, and services read their own writes (a contact
        # saved, then routed to). Consistency first; the benchmarks show the cost.
        allow_direct=False,
        max_msgs_per_subject=spec.history,
        num_replicas=replicas,
        max_age=spec.ttl_s or 0,
        discard=DiscardPolicy.NEW,
        storage=StorageType.FILE,
        duplicate_window=min(spec.ttl_s or 120.0, 120.0),
        allow_msg_ttl=True,
    )


_COMPARED = (
    "subjects",
    "description",
    "num_replicas",
    "max_age",
    "duplicate_window",
    "max_msg_size",
    "max_msgs_per_subject",
    "deny_delete",
    "deny_purge",
    "allow_direct",
)


async def _apply_stream(js: JetStreamContext, config: StreamConfig, report: ApplyReport) -> None:
    assert config.name is not None
    try:
        info = await js.stream_info(config.name)
    except NotFoundError:
        await js.add_stream(config)
        report.created.append(f"stream {config.name}")
        return
    current = info.config
    changed = [
        name
        for name in _COMPARED
        if getattr(config, name) is not None and getattr(current, name) != getattr(config, name)
    ]
    if not changed:
        report.unchanged.append(f"stream {config.name}")
        return
    try:
        await js.update_stream(config)
    except BadRequestError as error:
        raise StreamUpdateRefused(config.name, changed, str(error)) from None
    report.updated.append(f"stream {config.name} ({', '.join(changed)})")


class StreamUpdateRefused(RuntimeError):
    def __init__(self, name: str, fields: list[str], reason: str) -> None:
        super().__init__(f"stream {name}: update of {', '.join(fields)} refused: {reason}")


async def apply_resources_patiently(
    js: JetStreamContext,
    resources: Resources | Iterable[Resources],
    replicas: int,
    *,
    patience_s: float = 60.0,
) -> ApplyReport:
    """`apply_resources`, tried again while the cluster is still settling.

    Right after start (or a restart on existing data) the meta leader is elected within a
    second but streams take longer to recover; JetStream API calls time out or answer "not
    found" / "unavailable" meanwhile.
    """
    materialised = resources if isinstance(resources, Resources) else sum(resources, Resources())
    return await until_settled(
        lambda: apply_resources(js, materialised, replicas), patience_s=patience_s
    )


def is_settling(error: BaseException) -> bool:
    """An answer the JetStream API gives while the cluster settles: just started or
    restarted, or a node the meta leader saw miss a heartbeat on a loaded machine (placement
    then refuses it for a moment)."""
    if isinstance(error, nats.errors.TimeoutError):
        return True
    if not isinstance(error, APIError):
        return False
    return isinstance(error, (ServiceUnavailableError, NotFoundError)) or (
        error.err_code == PEER_OFFLINE
    )


T = TypeVar("T")


async def until_settled(operation: Callable[[], Awaitable[T]], *, patience_s: float = 60.0) -> T:
    """Run a JetStream API operation that may safely run twice (creating or updating to one
    configuration) again while `is_settling` says the cluster is not ready, up to `patience_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + patience_s
    while True:
        try:
            return await operation()
        except (nats.errors.TimeoutError, APIError) as error:
            if not is_settling(error) or loop.time() > deadline:
                raise
            await asyncio.sleep(0.5)


#: "no suitable peers for placement": a node of the placement is still starting.
PEER_OFFLINE = 10005
