"""Reading JetStream in one exact pass: a KV bucket's current values, or a stream's messages.

nats-py's `KeyValue.watch()` signals "no more current values" with a `None` that it may put
*before* values already on their way: it decides from the consumer's `num_pending` (which no
longer counts messages in flight) and from the messages its callback has seen so far (none, as
the callback waits for the set-up to finish). A scan that stops at that `None` can then miss
every entry — seen as a GDPR erasure that scrubbed nothing. `keys()` inherits the race.

Here the count comes from the server when the consumer is created (what it holds pending plus
what it already pushed): an ephemeral consumer (last value per subject, no acks) pushes to an
inbox that is read until the last of them has arrived.

That count is the view of one replica. An R1 consumer of an R3 stream lands on a random
replica of the stream, and a follower may not have applied the last writes yet (the leader
acknowledges once two of three replicas hold a message): a scan right after a write could
miss it. So each read also asks the stream leader for the last sequence on its subject, and
goes on until the consumer has delivered that far (a lagging follower pushes the rest as it
catches up).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass

from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext, api
from nats.js.errors import NotFoundError
from nats.js.kv import KeyValue

from mutualis_kernel.bus.connection import connection_of
from mutualis_kernel.bus.publisher import (
    PATIENT_ATTEMPT_S,
    attempt_limit,
    with_hedged_attempts,
    with_retries,
)

_DELETED = {"DEL", "PURGE"}


@dataclass(frozen=True)
class KvEntry:
    """A live key, its value, and the revision to expect when updating it."""

    key: str
    value: bytes
    revision: int


async def current_entries(
    js: JetStreamContext, bucket: str, pattern: str = ">", *, timeout: float = 10.0
) -> AsyncIterator[KvEntry]:
    """Every live entry of `bucket` whose key matches `pattern`; deleted keys are skipped.

    Raises `TimeoutError` when the server stops delivering before the count it announced.
    """
    prefix = f"$KV.{bucket}."
    messages = stream_messages(
        js,
        f"KV_{bucket}",
        f"{prefix}{pattern}",
        deliver_policy=api.DeliverPolicy.LAST_PER_SUBJECT,
        timeout=timeout,
    )
    # A consumer on a lagging replica delivers its last values, then the writes it catches up
    # on, which can replace (or delete) a key already delivered: the latest message wins.
    latest: dict[str, Msg] = {}
    async for message in messages:
        latest[message.subject] = message
    for message in sorted(latest.values(), key=lambda m: m.metadata.sequence.stream):
        headers = message.headers or {}
        if (
            headers.get("KV-Operation") in _DELETED
            or "Nats-Marker-Reason" in headers
            or not message.data
        ):
            continue
        yield KvEntry(
            key=message.subject[len(prefix) :],
            value=message.data,
            revision=message.metadata.sequence.stream,
        )


async def stream_messages(
    js: JetStreamContext,
    stream: str,
    subject: str,
    *,
    deliver_policy: api.DeliverPolicy = api.DeliverPolicy.ALL,
    timeout: float = 10.0,
    creation_deadline_s: float = 15.0,
) -> AsyncIterator[Msg]:
    """Every message of `stream` on `subject` stored when the call starts, in order, once.

    With `DeliverPolicy.LAST_PER_SUBJECT`, the last message of each subject, followed (when
    the consumer's replica lagged behind the leader) by the later messages it caught up on.

    The read is served by a consumer on one server; when that server stops (a rolling
    restart) the messages stop coming. A read of the whole subject (`DeliverPolicy.ALL`)
    then resumes after the last message received with a new consumer, on whichever server
    now serves the stream, after a pause of `attempt_limit` (0.5 s, then longer); it may then
    also return messages stored after the call started. Other policies, and a read that
    makes no progress for `timeout`, raise `TimeoutError`.
    """
    resumable = deliver_policy == api.DeliverPolicy.ALL
    loop = asyncio.get_running_loop()
    last_seq = 0
    stalls = 0
    progress_at = loop.time()
    while True:
        idle_s = attempt_limit(stalls + 1) if resumable else timeout
        reading = _read_once(
            js, stream, subject, deliver_policy, last_seq, idle_s, timeout, creation_deadline_s
        )
        try:
            async with contextlib.aclosing(reading) as messages:
                async for message in messages:
                    sequence = message.metadata.sequence.stream
                    if sequence <= last_seq:
                        continue  # already yielded before a resume
                    last_seq, stalls, progress_at = sequence, 0, loop.time()
                    yield message
            return
        except _Stalled as stalled:
            stalls += 1
            if not resumable or loop.time() - progress_at > timeout:
                raise TimeoutError(
                    f"{stream}: {stalled.remaining} messages never arrived"
                ) from None


class _Stalled(Exception):
    def __init__(self, remaining: int) -> None:
        self.remaining = remaining


async def _read_once(
    js: JetStreamContext,
    stream: str,
    subject: str,
    deliver_policy: api.DeliverPolicy,
    after_seq: int,
    idle_s: float,
    timeout: float,
    creation_deadline_s: float,
) -> AsyncGenerator[Msg, None]:
    """One consumer's delivery of the messages after `after_seq`; `_Stalled` if it stops."""
    nc = connection_of(js)  # the inbox must exist before the consumer
    # Push, not pull: a pull request right after a clustered consumer's creation can meet
    # "no responders" until its leader is known everywhere; a push consumer just delivers.
    subscriptions: list[Subscription] = []

    async def create() -> tuple[Subscription, api.ConsumerInfo]:
        # A new consumer and inbox per attempt. The meta leader may place an R1 consumer on a
        # replica that has just died and not yet been seen offline: asked again under the same
        # name, it would answer from that dead server, that is never. Attempts are hedged
        # (a slow creation may still win); a consumer whose creation lost pushes to an inbox
        # nobody reads any more, and is deleted or removed by its inactivity threshold.
        inbox = nc.new_inbox()
        subscription = await nc.subscribe(inbox)
        subscriptions.append(subscription)
        config = api.ConsumerConfig(
            name=f"read_{uuid.uuid4().hex}",
            deliver_policy=api.DeliverPolicy.BY_START_SEQUENCE if after_seq else deliver_policy,
            opt_start_seq=after_seq + 1 if after_seq else None,
            ack_policy=api.AckPolicy.NONE,
            deliver_subject=inbox,
            filter_subject=subject,
            inactive_threshold=timeout * 3,
            mem_storage=True,
            num_replicas=1,
        )
        try:
            return subscription, await js.add_consumer(stream, config)
        except BaseException:
            subscriptions.remove(subscription)
            await subscription.unsubscribe()
            raise

    async def _abandon(created: tuple[Subscription, api.ConsumerInfo]) -> None:
        subscription, info = created
        subscriptions.remove(subscription)
        await subscription.unsubscribe()
        # Not waited for: its server may be the one that is gone.
        await drop_consumer(js, stream, info.name)

    consumer: str | None = None
    try:
        # Asked of the leader while the consumer is made: how far this read must go.
        leader_last = asyncio.ensure_future(
            _last_sequence(js, stream, subject, creation_deadline_s)
        )
        try:
            # Creating it waits out an election of the stream's leader (4.5-7 s here).
            subscription, info = await with_hedged_attempts(
                create, creation_deadline_s, f"read {stream}", discard=_abandon
            )
        except BaseException:
            leader_last.cancel()
            raise
        target = await leader_last
        consumer = info.name
        # A push consumer starts delivering before its creation is answered, and the answer's
        # `num_pending` leaves out what it already sent: count those back in.
        delivered = info.delivered.consumer_seq if info.delivered else 0
        remaining = (info.num_pending or 0) + (delivered or 0)
        reached = after_seq
        while remaining > 0 or reached < target:
            try:
                message = await subscription.next_msg(timeout=idle_s)
            except NatsTimeoutError:
                raise _Stalled(max(remaining, 1)) from None
            remaining = message.metadata.num_pending
            reached = message.metadata.sequence.stream
            yield message
    finally:
        for opened in subscriptions:
            await opened.unsubscribe()
        await _forget(js, stream, consumer)


async def _last_sequence(js: JetStreamContext, stream: str, subject: str, deadline_s: float) -> int:
    """The sequence of the last message on `subject` (wildcards allowed), 0 when there is none.

    `STREAM.MSG.GET` (not the direct get) is answered by the stream's leader: it holds every
    acknowledged message."""
    try:
        message = await with_retries(
            lambda: js.get_msg(stream, subject=subject),
            deadline_s,
            f"last of {stream}",
            attempt_timeout_s=PATIENT_ATTEMPT_S,
        )
    except NotFoundError:
        return 0
    return message.seq or 0


def scan(kv: KeyValue, pattern: str = ">") -> AsyncIterator[KvEntry]:
    """`current_entries` for a nats-py `KeyValue` handle (which keeps its context and name)."""
    return current_entries(kv._js, kv._name, pattern)


async def current_keys(js: JetStreamContext, bucket: str, pattern: str = ">") -> list[str]:
    """The live keys matching `pattern` (empty when there are none, unlike nats-py's `keys()`)."""
    return [entry.key async for entry in current_entries(js, bucket, pattern)]


async def drop_consumer(js: JetStreamContext, stream: str, consumer: str) -> None:
    """Ask for an ephemeral read consumer's deletion without waiting for the answer: its
    inactivity threshold removes it anyway if the request is lost."""
    with contextlib.suppress(NatsError):
        await connection_of(js).publish(f"$JS.API.CONSUMER.DELETE.{stream}.{consumer}")


async def _forget(js: JetStreamContext, stream: str, consumer: str | None) -> None:
    # The inactivity threshold removes it anyway; deleting now keeps the consumer count flat.
    if consumer is None:
        return
    with contextlib.suppress(NotFoundError, NatsTimeoutError):
        await js.delete_consumer(stream, consumer)


class PatientKeyValue:
    """A KV bucket whose idempotent operations (get, put, delete) wait out an election.

    Compare-and-set writes are not here: retried after a lost ack they would meet their own
    write as a conflict, and each caller knows best how to recognise it.
    """

    def __init__(
        self, kv: KeyValue, *, deadline_s: float = 15.0, attempt_s: float = PATIENT_ATTEMPT_S
    ) -> None:
        self.kv = kv
        self.deadline_s = deadline_s
        self.attempt_s = attempt_s

    async def get(self, key: str) -> KeyValue.Entry:
        """The entry; `KeyNotFoundError` (not retried) when there is none."""
        return await with_retries(
            lambda: self.kv.get(key),
            self.deadline_s,
            f"get {key}",
            attempt_timeout_s=self.attempt_s,
        )

    async def put(self, key: str, value: bytes) -> int:
        return await with_retries(
            lambda: self.kv.put(key, value),
            self.deadline_s,
            f"put {key}",
            attempt_timeout_s=self.attempt_s,
        )

    async def delete(self, key: str) -> bool:
        return await with_retries(
            lambda: self.kv.delete(key),
            self.deadline_s,
            f"delete {key}",
            attempt_timeout_s=self.attempt_s,
        )
