"""Reading and writing Object Store objects: streamed, checked against their info, patient
through elections.

nats-py's `ObjectStore.get` reads through an ordered push consumer that idles waiting for flow
control, stops at the first message that says nothing is pending, and has no per-attempt time
limit. `ObjectReader` reads an object's chunks with batched direct gets instead
(`$JS.API.DIRECT.GET`, `FETCH_BATCH` chunks or `FETCH_BYTES` per request): no consumer to
create, so no round trip to the meta leader per read (a 1 MiB audit is two to three times
faster here), and any replica answers, the nearest first, also while the stream elects a
leader. Chunks are hashed (SHA-256) as they pass and the chunk count, the size and NATS's own
digest are checked against the object's info (`ObjectCorrupted` otherwise).

Two things a read must outlive without calling an intact object corrupted:
- the answer lost (the server it went through stopped, a replica recovering): the next
  request resumes after the last chunk received, `READ_ATTEMPTS` times at most
  (`ObjectUnavailable` then);
- a replica that lags: a follower may not hold the last chunks of an object just stored (the
  leader acknowledges once two of three replicas have them). When the replica counts fewer
  chunks than the info, the stream leader is asked how many the object's subject holds: the
  same number means the replica is catching up, and the rest is read from the leader; another
  number is corruption.

`put_object` writes an object in the Object Store's own layout with several chunks in
flight (nats-py's `put` waits for each chunk's ack before sending the next),
checking the order the stream stored them in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import json
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from datetime import UTC, datetime
from typing import BinaryIO

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import ObjectInfo, ObjectMetaOptions
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from mutualis_kernel.bus.connection import connection_of
from mutualis_kernel.bus.errors import PublishTimeout
from mutualis_kernel.bus.publisher import (
    PATIENT_ATTEMPT_S,
    attempt_limit,
    with_retries,
)

#: Reads wait out an election of the bucket's stream leader (4.5-7 s here).
READ_DEADLINE_S = 15.0
#: At most this many chunks and about this many bytes per pull request (64 chunks of 128 KiB,
#: 8 of 1 MiB): enough to keep the stream busy, little enough to hold in memory.
FETCH_BATCH = 64
FETCH_BYTES = 8 * 1024 * 1024
READ_ATTEMPTS = 6
#: nats-py's chunk size, for objects whose info does not say theirs.
DEFAULT_CHUNK = 128 * 1024


def object_stream(bucket: str) -> str:
    """The stream that holds an Object Store bucket (the server's and nats-py's naming)."""
    return f"OBJ_{bucket}"


def object_store(js: JetStreamContext, bucket: str) -> ObjectStore:
    """A handle on `bucket`, built directly: `js.object_store()` first asks for the stream's
    info, a round trip that weighs on small objects and tells nothing the handle needs."""
    return ObjectStore(name=bucket, stream=object_stream(bucket), js=js)


# A stream leader re-election takes 4.5-6.8 s here (FACTS.md): the backoff spans more than that.
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)


class DirectGetRefused(nats.errors.Error):
    """A direct get answered with a status other than a batch's end or "not found" (a replica
    that cannot serve just now, e.g. while it recovers): the read tries again."""


_TRANSIENT = (
    DirectGetRefused,
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    asyncio.TimeoutError,
)
# Statuses of a batched direct get: the batch is complete; nothing after the sequence asked.
_END_OF_BATCH = "204"
_NOT_FOUND = "404"


class ObjectMissing(Exception):
    """The object is not in its bucket (never stored, or deleted)."""


class ObjectCorrupted(ObjectMissing):
    """The object's chunks disagree with its info (count, size or NATS's SHA-256 digest).

    A subclass of `ObjectMissing`: whoever checks fixity reports either as a failed object."""


class ObjectUnavailable(PublishTimeout):
    """The object's stream did not answer (no leader, e.g. during an election) after retries.

    Not an integrity failure: the content may be intact, it could not be read just now. Like
    any bus call past its deadline, an HTTP request meeting it answers 503 with Retry-After."""


def _update(hashes: tuple[hashlib._Hash, ...], batch: list[bytes]) -> None:
    for data in batch:
        for digest in hashes:
            digest.update(data)


def _nats_sha256(info: ObjectInfo) -> bytes | None:
    """The SHA-256 nats-py (and the Go client) record in the object's info, when present."""
    digest = info.digest or ""
    for prefix in ("SHA-256=", "sha-256="):
        if digest.startswith(prefix):
            try:
                return base64.urlsafe_b64decode(digest[len(prefix) :])
            except (ValueError, binascii.Error):
                return None
    return None


class ObjectReader:
    """One object's chunks, in order, hashed (SHA-256) and checked as they pass."""

    def __init__(self, js: JetStreamContext, bucket: str, info: ObjectInfo) -> None:
        self._js = js
        self.bucket = bucket
        self.info = info
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.chunks = 0
        self.retries = 0
        self._replica_lags = False
        chunk_size = (info.options.max_chunk_size if info.options else None) or DEFAULT_CHUNK
        self._batch = max(1, min(FETCH_BATCH, FETCH_BYTES // chunk_size))

    @property
    def _stream(self) -> str:
        return object_stream(self.bucket)

    @property
    def _subject(self) -> str:
        return f"$O.{self.bucket}.C.{self.info.nuid}"

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, name: str) -> ObjectReader:
        """The reader of `name`, whose info is read from the stream leader (`ObjectMissing`)."""
        store = object_store(js, bucket)
        try:
            info = await with_retries(
                lambda: store.get_info(name, show_deleted=True),
                READ_DEADLINE_S,
                f"info {name}",
                attempt_timeout_s=PATIENT_ATTEMPT_S,
            )
        except ObjectNotFoundError:
            raise ObjectMissing(f"object {name} is not in {bucket}") from None
        if info.deleted or not info.nuid:
            raise ObjectMissing(f"object {name} was deleted from {bucket}")
        return cls(js, bucket, info)

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async with contextlib.aclosing(self._batches()) as batches:
            async for batch in batches:
                for data in batch:
                    self.sha256.update(data)
                    yield data
        self._check_digest()

    async def hash_all(self, *others: hashlib._Hash) -> None:
        """Read the whole object into `self.sha256` and `others`, discarding the bytes.

        Each batch is hashed in a thread while the next is fetched: hashlib releases the GIL,
        so hashing runs on the other core instead of after the read."""
        hashes = (self.sha256, *others)
        hashing: asyncio.Future[None] | None = None
        try:
            async with contextlib.aclosing(self._batches()) as batches:
                async for batch in batches:
                    if hashing is not None:
                        await hashing
                    hashing = asyncio.ensure_future(asyncio.to_thread(_update, hashes, batch))
        finally:
            if hashing is not None:
                await hashing
        self._check_digest()

    async def _batches(self) -> AsyncGenerator[list[bytes], None]:
        expected_chunks = self.info.chunks or 0
        last_seq = 0  # stream sequence of the last chunk received: a retry resumes after it
        failures = 0
        while self.chunks < expected_chunks:
            try:
                # An answer lost with a server that stopped never comes: the first attempt
                # gives up soon (a graceful restart then costs a reader about
                # PATIENT_ATTEMPT_S), later ones wait longer (a server only slow).
                fetch = self._leader_fetch_from if self._replica_lags else self._fetch_from
                fetches = fetch(
                    last_seq, expected_chunks - self.chunks, attempt_limit(failures + 1)
                )
                async with contextlib.aclosing(fetches) as received:
                    async for seq, pending, batch in received:
                        last_seq = seq
                        failures = 0
                        self.size += sum(len(data) for data in batch)
                        self.chunks += len(batch)
                        lagged = self._replica_lags
                        await self._check_count(pending, expected_chunks)
                        if batch:
                            yield batch
                        if self._replica_lags and not lagged:
                            break  # the rest comes from the stream leader
            except _TRANSIENT as error:
                failures += 1
                self.retries += 1
                if failures >= READ_ATTEMPTS:
                    raise ObjectUnavailable(
                        f"object {self.info.name} of {self.bucket}: stream {self._stream} did "
                        f"not answer after {failures} attempts ({type(error).__name__}: {error}); "
                        f"read {self.chunks} of {expected_chunks} chunks, up to stream "
                        f"sequence {last_seq} (stream leader lost?)"
                    ) from error
                await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1])
        expected_size = self.info.size or 0
        if self.size != expected_size:
            raise ObjectCorrupted(
                f"object {self.info.name} of {self.bucket}: read {self.size} bytes, "
                f"its info says {expected_size}"
            )

    async def _check_count(self, pending: int, expected_chunks: int) -> None:
        # `pending` counts the chunks still in the replica after this one: it settles early
        # whether chunks are missing (a read would otherwise wait for them until it gives up).
        held = self.chunks + pending
        if held == expected_chunks:
            return
        if held < expected_chunks:
            if self._replica_lags:
                return
            held = await self._leader_chunk_count()
            if held == expected_chunks:
                # A follower still catching up: the next fetches bring the rest, and the
                # size and digest are checked once they are in.
                self._replica_lags = True
                return
        if held != expected_chunks:
            raise ObjectCorrupted(
                f"object {self.info.name} of {self.bucket}: its stream holds "
                f"{held} chunks, its info says {expected_chunks}"
            )

    async def _leader_chunk_count(self) -> int:
        """How many chunks the stream leader holds for this object (stream info is its answer)."""
        info = await with_retries(
            lambda: self._js.stream_info(self._stream, subjects_filter=self._subject),
            READ_DEADLINE_S,
            f"chunks of {self.info.name}",
            attempt_timeout_s=PATIENT_ATTEMPT_S,
        )
        return (info.state.subjects or {}).get(self._subject, 0)

    def _check_digest(self) -> None:
        recorded = _nats_sha256(self.info)
        if recorded is not None and recorded != self.sha256.digest():
            raise ObjectCorrupted(
                f"object {self.info.name} of {self.bucket}: its chunks do not hash to the "
                "digest in its info"
            )

    async def _fetch_from(
        self, last_seq: int, remaining: int, limit_s: float
    ) -> AsyncGenerator[tuple[int, int, list[bytes]], None]:
        """Chunks after `last_seq` from the replica nearest this connection (batched direct
        gets); each message may take `limit_s` to come. Yields each batch with the number of
        chunks that replica holds after it; an empty batch when it holds none."""
        nc = connection_of(self._js)  # nats-py has no batched direct get
        subscription = await nc.subscribe(nc.new_inbox())
        subject = f"$JS.API.DIRECT.GET.{self._stream}"
        try:
            while remaining > 0:
                request = {
                    "seq": last_seq + 1,
                    "next_by_subj": self._subject,
                    "batch": min(self._batch, remaining),
                    "max_bytes": FETCH_BYTES,
                }
                await nc.publish(subject, json.dumps(request).encode(), reply=subscription.subject)
                batch: list[bytes] = []
                pending = 0
                while True:
                    message = await subscription.next_msg(timeout=limit_s)
                    headers = message.headers or {}
                    status = headers.get("Status")
                    if status is None:
                        batch.append(message.data)
                        last_seq = int(headers["Nats-Sequence"])
                        pending = int(headers["Nats-Num-Pending"])
                    elif status == _END_OF_BATCH:
                        break
                    elif status == _NOT_FOUND and not batch:
                        break  # nothing after last_seq on this replica
                    else:
                        raise DirectGetRefused(
                            f"direct get on {self._stream} answered {status} "
                            f"{headers.get('Description', '')}".rstrip()
                        )
                remaining -= len(batch)
                yield last_seq, pending, batch
                if not batch:
                    return
        finally:
            await subscription.unsubscribe()

    async def _leader_fetch_from(
        self, last_seq: int, remaining: int, limit_s: float
    ) -> AsyncGenerator[tuple[int, int, list[bytes]], None]:
        """Chunks after `last_seq` from the stream leader, one request each: the way round a
        replica that lags behind (rare, and never faster)."""
        while remaining > 0:
            try:
                message = await asyncio.wait_for(
                    self._js.get_msg(
                        self._stream, seq=last_seq + 1, next=True, subject=self._subject
                    ),
                    limit_s,
                )
            except nats.js.errors.NotFoundError:
                raise ObjectCorrupted(
                    f"object {self.info.name} of {self.bucket}: its stream leader holds no "
                    f"chunk after sequence {last_seq}, {remaining} short of its info"
                ) from None
            assert message.seq is not None
            last_seq = message.seq
            remaining -= 1
            yield last_seq, remaining, [message.data or b""]


# -- writing --------------------------------------------------------------------------------
#: Chunks of one put in flight at once. nats-py's `put` waits for each chunk's ack before
#: sending the next (an R3 round trip per chunk); a window lets the stream leader replicate
#: several chunks per round trip.
PUT_WINDOW = 8
#: The pace an R3 put of large chunks may fall to on a starved cluster (two cores shared with
#: the servers: 30 MiB/s was measured for 50 MiB puts under load), which an ack's limit allows
#: for on top of the first attempt's limit.
SLOW_REPLICATION_B_S = 16 * 1024 * 1024


class ChunksOutOfOrder(nats.errors.TimeoutError):
    """The stream stored a window's chunks in another order than they were sent (possible
    only when an attempt is resent): the put is made again under a new nuid."""


async def put_object(
    js: JetStreamContext,
    bucket: str,
    name: str,
    source: BinaryIO,
    *,
    description: str | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    timeout_s: float = PATIENT_ATTEMPT_S,
    window: int = PUT_WINDOW,
) -> ObjectInfo:
    """Store what `source` holds from its current position as object `name` of `bucket`, in
    the Object Store's own layout (nats-py and the `nats` CLI read it back): chunks on
    `$O.<bucket>.C.<nuid>`, then the info on the name's meta subject with a rollup, then the
    chunks of the object it replaces purged.

    One attempt: each ack is awaited at most `timeout_s`, plus the time its window takes to
    replicate at a starved cluster's pace (`SLOW_REPLICATION_B_S`); a failed attempt purges
    its own chunks (best effort) and raises, and the caller makes it again whole, from the
    same position (`with_attempt_limits`). The chunks' order is checked against their stream
    sequences, never assumed.
    """
    stream = object_stream(bucket)
    nuid = uuid.uuid4().hex
    chunk_subject = f"$O.{bucket}.C.{nuid}"
    replaced = asyncio.ensure_future(_current_nuid(js, bucket, name, timeout_s))
    digest = hashlib.sha256()
    size = chunks = last_seq = 0
    purge_own_chunks_on_failure = True
    try:
        while True:
            batch = await asyncio.to_thread(_read_chunks, source, chunk_size, window)
            if not batch:
                break
            for data in batch:
                digest.update(data)
            batch_size = sum(len(data) for data in batch)
            # The last ack of a window comes once the whole window is replicated: a limit
            # meant for one small request would cut a healthy put of large chunks short.
            limit_s = timeout_s + batch_size / SLOW_REPLICATION_B_S
            acks = await asyncio.gather(
                *(js.publish(chunk_subject, data, timeout=limit_s) for data in batch)
            )
            for ack in acks:
                if ack.seq <= last_seq:
                    raise ChunksOutOfOrder(f"chunk stored at {ack.seq} after {last_seq}")
                last_seq = ack.seq
            chunks += len(batch)
            size += batch_size
        info = ObjectInfo(
            name=name,
            description=description,
            options=ObjectMetaOptions(max_chunk_size=chunk_size),
            bucket=bucket,
            nuid=nuid,
            size=size,
            chunks=chunks,
            mtime=datetime.now(UTC).isoformat(),
            digest=f"SHA-256={base64.urlsafe_b64encode(digest.digest()).decode()}",
        )
        meta_subject = f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"
        # From here the info may land even if its ack is lost: these chunks are then the
        # object's, and the next attempt (which replaces it) purges them.
        purge_own_chunks_on_failure = False
        await js.publish(
            meta_subject,
            json.dumps(info.as_dict()).encode(),
            timeout=timeout_s,
            headers={"Nats-Rollup": "sub"},
        )
    except BaseException:
        replaced.cancel()
        if purge_own_chunks_on_failure:
            # Best effort and brief: the retry must not wait on a cluster that cannot answer.
            with contextlib.suppress(Exception):
                async with asyncio.timeout(timeout_s):
                    await js.purge_stream(stream, subject=chunk_subject)
        raise
    previous = await replaced
    if previous is not None and previous != nuid:
        await js.purge_stream(stream, subject=f"$O.{bucket}.C.{previous}")
    return info


def _read_chunks(source: BinaryIO, chunk_size: int, count: int) -> list[bytes]:
    batch: list[bytes] = []
    while len(batch) < count and (data := source.read(chunk_size)):
        batch.append(data)
    return batch


async def _current_nuid(
    js: JetStreamContext, bucket: str, name: str, timeout_s: float
) -> str | None:
    """The nuid of the object this put replaces (its chunks are purged once replaced)."""
    try:
        info = await asyncio.wait_for(object_store(js, bucket).get_info(name), timeout_s)
    except ObjectNotFoundError:
        return None
    return None if info.deleted else info.nuid
