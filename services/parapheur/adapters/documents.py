"""Documents in the JetStream Object Store (R3), streamed from and to files.

Never read a document whole into memory: nats-py's in-memory `get` copies quadratically
(64 MiB: 7.7 s against 1.5 s with `writeinto=`), and PDFs can be large.
"""

from __future__ import annotations

import asyncio
from typing import BinaryIO

from nats.js import JetStreamContext
from nats.js.errors import ObjectNotFoundError
from nats.js.object_store import ObjectStore

from mutualis_kernel.bus.objects import ObjectMissing, ObjectReader, put_object
from mutualis_kernel.bus.publisher import with_attempt_limits
from parapheur.domain import errors

#: Reads and writes wait out an election of the bucket's stream leader (4.5-7 s here).
READ_DEADLINE_S = 15.0


class DocumentMissing(errors.ParapheurError):
    code = "document_missing"
    status = 404


class ObjectStoreDocuments:
    def __init__(self, js: JetStreamContext, bucket: str) -> None:
        self._js = js
        self._bucket = bucket
        self._store: ObjectStore | None = None

    async def _bucket_handle(self) -> ObjectStore:
        # Looking the bucket up is a stream-info round trip; the handle itself is only names,
        # so one lookup serves every document (three per signed folder otherwise).
        if self._store is None:
            self._store = await self._js.object_store(self._bucket)
        return self._store

    async def put(self, name: str, source: BinaryIO, content_type: str) -> None:
        start = source.tell()

        async def write(limit_s: float) -> None:
            # Putting a name again replaces the object whole: an attempt cut by an election
            # is simply made again from the start of the file. A chunk lost with a leader
            # that stepped down is noticed after the attempt's limit, not nats-py's 5 s.
            source.seek(start)
            await put_object(
                self._js, self._bucket, name, source, description=content_type, timeout_s=limit_s
            )

        await with_attempt_limits(write, READ_DEADLINE_S, f"document {name}")

    async def get_into(self, name: str, target: BinaryIO) -> None:
        """Write the document into `target`, chunk by chunk, checked against its info.

        The kernel's `ObjectReader` resumes after the last chunk through an election and
        waits for a lagging replica; nats-py's `get` took its first "nothing pending" for the
        end and failed the digest of a document read from a follower still catching up."""
        try:
            reader = await ObjectReader.open(self._js, self._bucket, name)
        except ObjectMissing:
            raise DocumentMissing(f"document {name} is not in the store") from None
        async for chunk in reader:
            await asyncio.to_thread(target.write, chunk)

    async def delete(self, name: str) -> None:
        store = await self._bucket_handle()
        try:
            await store.delete(name)
        except ObjectNotFoundError:
            return
