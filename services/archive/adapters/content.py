"""Archived content in the JetStream Object Store, streamed and hashed on the way.

Content is never held whole in memory: uploads are hashed (SHA-256 and SHA-512 at once) while
copied to a temporary file, the file is then `put`; reads stream the object's chunks straight
from its stream with an ordered consumer (nats-py's in-memory `get` copies quadratically).
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
from nats.js.api import ObjectMeta
from nats.js.errors import ObjectNotFoundError

from archive.domain import formats
from archive.domain.model import FormatInfo

CHUNK = 1024 * 1024
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


class ContentMissing(Exception):
    pass


class ContentStore:
    """One Object Store bucket; object names are `<tenant>/<record_id>/<sha256>`."""

    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self.bucket = bucket

    async def put_file(self, name: str, path: Path, content_type: str) -> None:
        store = await self._js.object_store(self.bucket)
        with path.open("rb") as source:
            await store.put(name, source, meta=ObjectMeta(name=name, description=content_type))  # type: ignore[arg-type]

    async def exists(self, name: str) -> bool:
        store = await self._js.object_store(self.bucket)
        try:
            info = await store.get_info(name)
        except ObjectNotFoundError:
            return False
        return not info.deleted

    async def delete(self, name: str) -> None:
        store = await self._js.object_store(self.bucket)
        try:
            await store.delete(name)
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
        return await fixity_digest(self._js, self.bucket, name)


async def iter_object(js: JetStreamContext, bucket: str, name: str) -> AsyncIterator[bytes]:
    store = await js.object_store(bucket)
    try:
        info = await store.get_info(name)
    except ObjectNotFoundError:
        raise ContentMissing(f"object {name} is not in {bucket}") from None
    if info.deleted or not info.nuid:
        raise ContentMissing(f"object {name} was deleted from {bucket}")
    if not info.size:
        return
    subscription = await js.subscribe(f"$O.{bucket}.C.{info.nuid}", ordered_consumer=True)
    try:
        async for message in subscription.messages:
            yield message.data
            if message.metadata.num_pending == 0:
                break
    finally:
        await subscription.unsubscribe()


async def fixity_digest(js: JetStreamContext, bucket: str, name: str) -> Fixity:
    """Re-hash a stored object (SHA-256 and SHA-512), streaming its chunks."""
    digester = Digester()
    async for chunk in iter_object(js, bucket, name):
        digester.sha256.update(chunk)
        digester.sha512.update(chunk)
        digester.size += len(chunk)
    return digester.fixity()


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
