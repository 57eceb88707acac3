"""Archived content in the JetStream Object Store, streamed and hashed on the way.

Content is never held whole in memory: uploads are hashed (SHA-256 and SHA-512 at once) while
copied to a temporary file, the file is then `put`; reads stream the object's chunks straight
from its stream with an ordered consumer (nats-py's in-memory `get` copies quadratically).
`fixity_digest` is the audit's hashing function; the benchmark calls it too.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import uuid
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    ObjectInfo,
    ObjectMeta,
    ObjectMetaOptions,
)
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from archive.domain import formats
from archive.domain.model import FormatInfo
from mutualis_kernel.bus.publisher import (
    PATIENT_ATTEMPT_S,
    attempt_limit,
    jetstream_with_timeout,
    with_attempt_limits,
    with_retries,
)

CHUNK = 1024 * 1024
#: Chunk size of the objects this service stores. nats-py's default is 128 KiB; its `put`
#: waits for one ack per chunk, so 1 MiB chunks cut the round trips of a put eightfold, and
#: reads handle an eighth of the messages. Capped by the server's max_payload (1 MiB by
#: default). Objects stored earlier keep their 128 KiB chunks and read the same way.
PUT_CHUNK = 1024 * 1024
HEAD_BYTES = 8192
#: Reads wait out an election of the content stream's leader (4.5-7 s here).
READ_DEADLINE_S = 15.0
_MARKER_OVERLAP = max(len(m) for m in formats.PDFA_MARKERS)


@dataclass(frozen=True)
class Fixity:
    size: int
    sha256: str
    sha512: str


@dataclass
class Digester:
    """SHA-256 + SHA-512 of a byte stream, its first bytes and whether a PDF/A marker passed."""

    sha256: hashlib._Hash = field(default_factory=hashlib.sha256)
    sha512: hashlib._Hash = field(default_factory=hashlib.sha512)
    size: int = 0
    head: bytes = b""
    pdfa_marker_seen: bool = False
    _tail: bytes = b""

    def update(self, chunk: bytes | memoryview) -> None:
        data = bytes(chunk) if isinstance(chunk, memoryview) else chunk
        self.sha256.update(data)
        self.sha512.update(data)
        self.size += len(data)
        if len(self.head) < HEAD_BYTES:
            self.head += data[: HEAD_BYTES - len(self.head)]
        if not self.pdfa_marker_seen and self.head.startswith(b"%PDF-"):
            window = self._tail + data
            if any(marker in window for marker in formats.PDFA_MARKERS):
                self.pdfa_marker_seen = True
            self._tail = window[-_MARKER_OVERLAP:]

    def fixity(self) -> Fixity:
        return Fixity(self.size, self.sha256.hexdigest(), self.sha512.hexdigest())


def digest_file(source: BinaryIO, copy_to: BinaryIO | None = None) -> Digester:
    """Hash `source` from its current position (blocking: run it in a thread)."""
    digester = Digester()
    while chunk := source.read(CHUNK):
        digester.update(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return digester


def identify_file(path: Path, digester: Digester) -> FormatInfo:
    """The format of a file already hashed by `digester` (opens ZIPs to look inside)."""
    names: list[str] | None = None
    odf_mimetype: bytes | None = None
    if formats.is_zip(digester.head):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
                if "mimetype" in names:
                    odf_mimetype = archive.read("mimetype")[:200]
        except (zipfile.BadZipFile, OSError):
            names = []
    return formats.identify(
        digester.head,
        pdfa_marker_seen=digester.pdfa_marker_seen,
        zip_names=names,
        odf_mimetype=odf_mimetype,
    )


class ContentMissing(Exception):
    pass


class ContentCorrupted(ContentMissing):
    """The object's chunks disagree with its info (count, size or NATS's SHA-256 digest).

    A subclass of `ContentMissing` so that a fixity check reports it as a failed object."""


class ContentUnavailable(Exception):
    """The object's stream did not answer (no leader, e.g. during an election) after retries.

    Not an integrity failure: the content may be intact, it could not be read just now."""


#: At most this many chunks and about this many bytes per pull request (64 chunks of 128 KiB,
#: 8 of 1 MiB): enough to keep the stream busy, little enough to hold in memory.
FETCH_BATCH = 64
FETCH_BYTES = 8 * 1024 * 1024
READ_ATTEMPTS = 6
#: A put waits out an election of the bucket's stream leader (4.5-7 s here).
PUT_DEADLINE_S = 15.0
# A stream leader re-election takes 4.5-6.8 s here (FACTS.md): the backoff spans more than that.
_BACKOFF_S = (0.25, 0.5, 1.0, 2.0, 4.0)
# Backstop for a consumer whose delete request was lost (the reader crashed, the link dropped).
_CONSUMER_IDLE_S = 30.0
_TRANSIENT = (
    nats.errors.TimeoutError,
    nats.errors.NoRespondersError,
    nats.js.errors.NoStreamResponseError,
    nats.js.errors.ServiceUnavailableError,
    nats.js.errors.ServerError,
    nats.js.errors.NotFoundError,  # our consumer vanished with the server that held it
    asyncio.TimeoutError,
)


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
    """Reads one object's chunks with ephemeral pull consumers, hashing them (SHA-256) as they pass.

    nats-py's ordered push consumer idles most of the time waiting for flow control; a pull
    consumer with no acks, fetching `FETCH_BATCH` chunks (`FETCH_BYTES` at most) at a time,
    reads ~3x faster here. The
    chunk count, total size and NATS's own SHA-256 digest are checked against the object's info
    once the last chunk is in (`ContentCorrupted` otherwise). If the stream stops answering
    mid-read, a new consumer resumes after the last chunk received, `READ_ATTEMPTS` times at most
    (`ContentUnavailable` then).
    """

    def __init__(self, js: JetStreamContext, bucket: str, info: ObjectInfo) -> None:
        self._js = js
        self.bucket = bucket
        self.info = info
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.chunks = 0
        self.retries = 0
        chunk_size = (info.options.max_chunk_size if info.options else None) or PUT_CHUNK
        self._batch = max(1, min(FETCH_BATCH, FETCH_BYTES // chunk_size))

    @classmethod
    async def open(cls, js: JetStreamContext, bucket: str, name: str) -> ObjectReader:
        # Built directly: `js.object_store()` asks for the stream's info first, a round trip
        # that weighs on small objects and tells nothing the object's own info does not.
        store = ObjectStore(name=bucket, stream=f"OBJ_{bucket}", js=js)
        try:
            info = await with_retries(
                lambda: store.get_info(name, show_deleted=True),
                READ_DEADLINE_S,
                f"info {name}",
                attempt_timeout_s=PATIENT_ATTEMPT_S,
            )
        except ObjectNotFoundError:
            raise ContentMissing(f"object {name} is not in {bucket}") from None
        if info.deleted or not info.nuid:
            raise ContentMissing(f"object {name} was deleted from {bucket}")
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
                # A consumer or a fetch lost with a server that stopped is never answered:
                # the first attempt gives up soon (a graceful restart then costs a reader
                # about PATIENT_ATTEMPT_S), later ones wait longer (a server only slow).
                fetches = self._fetch_from(
                    last_seq, expected_chunks - self.chunks, attempt_limit(failures + 1)
                )
                async with contextlib.aclosing(fetches) as received:
                    async for seq, pending, batch in received:
                        last_seq = seq
                        failures = 0
                        self.size += sum(len(data) for data in batch)
                        self.chunks += len(batch)
                        self._check_count(pending, expected_chunks)
                        yield batch
            except _TRANSIENT as error:
                failures += 1
                self.retries += 1
                if failures >= READ_ATTEMPTS:
                    raise ContentUnavailable(
                        f"object {self.info.name} of {self.bucket}: stream OBJ_{self.bucket} did "
                        f"not answer after {failures} attempts ({type(error).__name__}: {error}); "
                        f"read {self.chunks} of {expected_chunks} chunks, up to stream "
                        f"sequence {last_seq} (stream leader lost?)"
                    ) from error
                await asyncio.sleep(_BACKOFF_S[min(failures, len(_BACKOFF_S)) - 1])
        expected_size = self.info.size or 0
        if self.size != expected_size:
            raise ContentCorrupted(
                f"object {self.info.name} of {self.bucket}: read {self.size} bytes, "
                f"its info says {expected_size}"
            )

    def _check_count(self, pending: int, expected_chunks: int) -> None:
        # `pending` counts the chunks still in the stream after this one: it settles early
        # whether chunks are missing (a read would otherwise wait for them until it gives up).
        if self.chunks + pending != expected_chunks:
            raise ContentCorrupted(
                f"object {self.info.name} of {self.bucket}: its stream holds "
                f"{self.chunks + pending} chunks, its info says {expected_chunks}"
            )

    def _check_digest(self) -> None:
        recorded = _nats_sha256(self.info)
        if recorded is not None and recorded != self.sha256.digest():
            raise ContentCorrupted(
                f"object {self.info.name} of {self.bucket}: its chunks do not hash to the "
                "digest in its info"
            )

    async def _fetch_from(
        self, last_seq: int, remaining: int, limit_s: float
    ) -> AsyncGenerator[tuple[int, int, list[bytes]], None]:
        """Chunks after `last_seq`; each call to the server may wait `limit_s` for an answer.

        A fetch that got part of its batch when `limit_s` ran out returns that part.
        """
        stream = f"OBJ_{self.bucket}"
        subject = f"$O.{self.bucket}.C.{self.info.nuid}"
        name = f"read_{uuid.uuid4().hex}"
        config = ConsumerConfig(
            name=name,
            ack_policy=AckPolicy.NONE,
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE if last_seq else DeliverPolicy.ALL,
            opt_start_seq=last_seq + 1 if last_seq else None,
            filter_subject=subject,
            mem_storage=True,
            num_replicas=1,
            inactive_threshold=_CONSUMER_IDLE_S,
        )
        await self._js.add_consumer(stream, config=config, timeout=limit_s)
        subscription = await self._js.pull_subscribe_bind(consumer=name, stream=stream)
        try:
            while remaining > 0:
                messages = await subscription.fetch(min(self._batch, remaining), timeout=limit_s)
                remaining -= len(messages)
                meta = messages[-1].metadata
                yield meta.sequence.stream, meta.num_pending, [m.data for m in messages]
        finally:
            await subscription.unsubscribe()
            # Fire and forget: waiting for the reply costs a round trip per object, and the
            # inactivity threshold removes the consumer anyway if this request is lost.
            with contextlib.suppress(nats.errors.Error):
                await self._js._nc.publish(f"$JS.API.CONSUMER.DELETE.{stream}.{name}")


class ContentStore:
    """One Object Store bucket; object names are `<tenant>/<record_id>/<sha256>`."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self.bucket = bucket
        # Built directly, as in `ObjectReader.open`: `js.object_store()` costs a stream info
        # round trip per call, a fixed cost that weighs on every small ingest.
        self._store = ObjectStore(name=bucket, stream=f"OBJ_{bucket}", js=js)

    async def put_file(self, name: str, path: Path, content_type: str) -> None:
        chunk_size = min(PUT_CHUNK, self._js._nc.max_payload)
        meta = ObjectMeta(
            name=name,
            description=content_type,
            options=ObjectMetaOptions(max_chunk_size=chunk_size),
        )

        async def write(limit_s: float) -> None:
            # Putting a name again replaces the object whole, so an attempt cut by an election
            # or by a leader that stepped down is made again from the start of the file; each
            # chunk waits the attempt's limit for its ack, not nats-py's 5 s.
            js = jetstream_with_timeout(self._js, limit_s)
            store = ObjectStore(name=self.bucket, stream=f"OBJ_{self.bucket}", js=js)
            with path.open("rb") as source:
                await store.put(name, source, meta=meta)

        await with_attempt_limits(write, PUT_DEADLINE_S, f"object {name}")

    async def exists(self, name: str) -> bool:
        try:
            info = await self._store.get_info(name)
        except ObjectNotFoundError:
            return False
        return not info.deleted

    async def delete(self, name: str) -> None:
        try:
            await self._store.delete(name)
        except ObjectNotFoundError:
            return

    async def chunks(self, name: str) -> AsyncIterator[bytes]:
        """The object's bytes, chunk by chunk, read from its stream in order."""
        async for chunk in iter_object(self._js, self.bucket, name):
            yield chunk

    async def write_to(self, name: str, target: BinaryIO) -> None:
        async for chunk in self.chunks(name):
            await asyncio.to_thread(target.write, chunk)

    async def fixity(self, name: str) -> Fixity:
        """SHA-256 and SHA-512 of the stored object (the full verification)."""
        return await fixity_digest(self._js, self.bucket, name)

    async def sha256_fixity(self, name: str) -> ContentDigest:
        """SHA-256 only of the stored object (the routine audit)."""
        return await sha256_digest(self._js, self.bucket, name)


async def iter_object(js: JetStreamContext, bucket: str, name: str) -> AsyncIterator[bytes]:
    """The object's bytes, chunk by chunk, checked against its info once read (`ObjectReader`)."""
    reader = await ObjectReader.open(js, bucket, name)
    async for chunk in reader:
        yield chunk


@dataclass(frozen=True)
class ContentDigest:
    size: int
    sha256: str


async def sha256_digest(js: JetStreamContext, bucket: str, name: str) -> ContentDigest:
    """Re-hash a stored object with SHA-256 only: the routine audit's check.

    SHA-512 is computed at ingest and checked by the full verification (`fixity_digest`); on
    this machine it runs at a third of SHA-256's speed and would dominate the audit."""
    reader = await ObjectReader.open(js, bucket, name)
    await reader.hash_all()
    return ContentDigest(reader.size, reader.sha256.hexdigest())


async def fixity_digest(js: JetStreamContext, bucket: str, name: str) -> Fixity:
    """Re-hash a stored object (SHA-256 and SHA-512), streaming its chunks."""
    reader = await ObjectReader.open(js, bucket, name)
    sha512 = hashlib.sha512()
    await reader.hash_all(sha512)
    return Fixity(reader.size, reader.sha256.hexdigest(), sha512.hexdigest())


@dataclass
class Staged:
    """Content copied to a temporary file and hashed on the way, ready to be stored."""

    path: Path
    fixity: Fixity
    format: FormatInfo

    def discard(self) -> None:
        self.path.unlink(missing_ok=True)


def _stage_sync(source: BinaryIO, directory: Path | None) -> Staged:
    import tempfile

    with tempfile.NamedTemporaryFile(
        prefix="archive-", suffix=".part", dir=directory, delete=False
    ) as target:
        digester = digest_file(source, copy_to=target)
        path = Path(target.name)
    return Staged(path, digester.fixity(), identify_file(path, digester))


async def stage(source: BinaryIO, directory: Path | None = None) -> Staged:
    """Copy `source` to a temp file, hashing as it goes (in a thread: file I/O blocks)."""
    return await asyncio.to_thread(_stage_sync, source, directory)


async def stage_object(
    js: JetStreamContext, bucket: str, name: str, directory: Path | None = None
) -> Staged:
    """Copy an object of another bucket (the parapheur's) to a hashed temp file."""
    import tempfile

    digester = Digester()
    with tempfile.NamedTemporaryFile(
        prefix="archive-", suffix=".part", dir=directory, delete=False
    ) as target:
        async for chunk in iter_object(js, bucket, name):
            digester.update(chunk)
            await asyncio.to_thread(target.write, chunk)
        path = Path(target.name)
    return Staged(path, digester.fixity(), identify_file(path, digester))
