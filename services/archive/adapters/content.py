"""Archived content in the JetStream Object Store, streamed and hashed on the way.

Content is never held whole in memory: uploads are hashed (SHA-256 and SHA-512 at once) while
copied to a temporary file, the file is then `put`; reads stream the object's chunks straight
from its stream through the kernel's `ObjectReader` (nats-py's in-memory `get` copies
quadratically).
`fixity_digest` is the audit's hashing function; the benchmark calls it too.
"""

from __future__ import annotations

import asyncio
import hashlib
import zipfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError

from archive.domain import formats
from archive.domain.model import FormatInfo
from mutualis_kernel.bus.connection import connection_of
from mutualis_kernel.bus.objects import (
    ObjectCorrupted,
    ObjectMissing,
    ObjectReader,
    ObjectUnavailable,
    object_store,
    put_object,
)
from mutualis_kernel.bus.publisher import with_attempt_limits

CHUNK = 1024 * 1024
#: Chunk size of the objects this service stores. nats-py's default is 128 KiB; its `put`
#: waits for one ack per chunk, so 1 MiB chunks cut the round trips of a put eightfold, and
#: reads handle an eighth of the messages. Capped by the server's max_payload (1 MiB by
#: default). Objects stored earlier keep their 128 KiB chunks and read the same way.
PUT_CHUNK = 1024 * 1024
HEAD_BYTES = 8192
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


#: The kernel's object-read errors, under the names this service's callers know.
ContentMissing = ObjectMissing
ContentCorrupted = ObjectCorrupted
ContentUnavailable = ObjectUnavailable
#: A put waits out an election of the bucket's stream leader (4.5-7 s here).
PUT_DEADLINE_S = 15.0


class ContentStore:
    """One Object Store bucket; object names are `<tenant>/<record_id>/<sha256>`."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self.bucket = bucket
        self._store = object_store(js, bucket)

    async def put_file(self, name: str, path: Path, content_type: str) -> None:
        chunk_size = min(PUT_CHUNK, connection_of(self._js).max_payload)

        async def write(limit_s: float) -> None:
            # Putting a name again replaces the object whole, so an attempt cut by an election
            # or by a leader that stepped down is made again from the start of the file; each
            # chunk waits the attempt's limit for its ack, not nats-py's 5 s.
            with path.open("rb") as source:
                await put_object(
                    self._js,
                    self.bucket,
                    name,
                    source,
                    description=content_type,
                    chunk_size=chunk_size,
                    timeout_s=limit_s,
                )

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
