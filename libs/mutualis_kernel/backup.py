"""Backups of every JetStream stream, KV bucket and object store, and their restore.

This module owns the backup format and the JetStream snapshot protocol, nothing else: it
does not pick servers, print anything or decide when to back up (the CLI does).

A backup directory holds, per stream (KV buckets are `KV_<bucket>` streams, object stores
`OBJ_<bucket>` streams, so they are backed up as streams too):

- `<dir>/<stream>/backup.json`: the stream's configuration and state as the snapshot answered;
- `<dir>/<stream>/stream.tar.s2`: the snapshot's chunks exactly as the server sent them
  (an S2-compressed tar of the stream's store, durable consumers' state included),

the same layout `nats stream backup` writes, and `<dir>/manifest.json`: when, which streams,
their message counts and the SHA-256 of every file. The manifest is written last, so a backup
that stopped half-way has none and is refused; a restore checks every file against it before
touching the cluster.

Each stream is snapshotted on its own: a backup is consistent per stream, not across streams
(an event and the KV entry it led to may straddle the backup's moment).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamInfo
from nats.js.errors import APIError, NotFoundError
from pydantic import BaseModel, ValidationError

from mutualis_kernel.bus.connection import connection_of

SNAPSHOT_API = "STREAM.SNAPSHOT.{stream}"
RESTORE_API = "STREAM.RESTORE.{stream}"
NAMES_API = "STREAM.NAMES"
META_FILE = "backup.json"
DATA_FILE = "stream.tar.s2"
MANIFEST_FILE = "manifest.json"
FORMAT = 1

#: Chunks the server sends during a snapshot; the restore sends chunks of the same size.
CHUNK_SIZE = 128 * 1024
#: How long a snapshot may go without a chunk before it is declared stuck.
IDLE_TIMEOUT_S = 30.0
#: How long the server may take to rebuild a stream from the last restore chunk.
RESTORE_FINISH_TIMEOUT_S = 600.0

#: How long a restore's deliver subject may take to become reachable through the routes.
INTEREST_TIMEOUT_S = 10.0
#: How long a restore keeps asking while the cluster finds no peers for placement (code 10005).
PLACEMENT_TIMEOUT_S = 15.0
NO_SUITABLE_PEERS = 10005
#: How long a restored stream may take to elect a leader and bring its replicas current.
SETTLE_TIMEOUT_S = 60.0

StreamKind = Literal["stream", "kv", "object_store"]


class BackupError(RuntimeError):
    """A backup or restore that could not be done; the message says what to do."""


class BackupCorrupted(BackupError):
    """A backup directory that is incomplete or whose files do not match its manifest."""


class BackupExists(BackupError):
    """A backup asked into a directory that already holds one: backups are never mixed."""


class StreamsExist(BackupError):
    """A restore that would overwrite streams already in the cluster."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = list(names)
        super().__init__(
            f"these streams already exist: {', '.join(self.names)}; "
            "restore into an empty cluster, or pass replace=True (--replace) to delete them first"
        )


# -- reports and manifest -------------------------------------------------------------------
class BackedUpFile(BaseModel):
    path: str  # relative to the backup directory
    size: int
    sha256: str


class StreamBackup(BaseModel):
    name: str
    kind: StreamKind
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int
    replicas: int
    files: list[BackedUpFile]


class SkippedStream(BaseModel):
    name: str
    reason: str


class Manifest(BaseModel):
    format: int = FORMAT
    created_at: datetime
    streams: list[StreamBackup]
    skipped: list[SkippedStream] = []


class BackupReport(BaseModel):
    directory: str
    created_at: datetime
    streams: list[StreamBackup]
    skipped: list[SkippedStream]
    duration_s: float

    @property
    def total_bytes(self) -> int:
        return sum(f.size for s in self.streams for f in s.files)


class StreamRestore(BaseModel):
    name: str
    kind: StreamKind
    replicas: int
    replaced: bool
    messages_expected: int
    messages: int
    last_seq_expected: int
    last_seq: int
    consumers: int

    @property
    def complete(self) -> bool:
        return self.messages == self.messages_expected and self.last_seq == self.last_seq_expected


class RestoreReport(BaseModel):
    directory: str
    backup_created_at: datetime
    streams: list[StreamRestore]
    duration_s: float

    @property
    def complete(self) -> bool:
        return all(s.complete for s in self.streams)


def kind_of(stream: str) -> StreamKind:
    if stream.startswith("KV_"):
        return "kv"
    if stream.startswith("OBJ_"):
        return "object_store"
    return "stream"


# -- JetStream API plumbing -----------------------------------------------------------------
def _api(js: JetStreamContext, template: str, stream: str = "") -> str:
    prefix: str = js._prefix  # "$JS.API" unless the context was made for another domain
    return f"{prefix}.{template.format(stream=stream)}"


async def _api_request(js: JetStreamContext, subject: str, body: dict[str, Any]) -> dict[str, Any]:
    # _api_request turns an `error` answer into nats.js.errors.APIError (and its subclasses).
    answer: dict[str, Any] = await js._api_request(subject, json.dumps(body).encode(), timeout=10)
    return answer


async def stream_names(js: JetStreamContext) -> list[str]:
    """Every stream of the account, KV and object store streams included, sorted."""
    names: list[str] = []
    while True:
        answer = await _api_request(js, _api(js, NAMES_API), {"offset": len(names)})
        page = answer.get("streams") or []
        names.extend(page)
        if not page or len(names) >= int(answer.get("total", 0)):
            return sorted(names)


# -- backup ---------------------------------------------------------------------------------
def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while block := file.read(1024 * 1024):
            digest.update(block)
    return digest.hexdigest()


def _backed_up(root: Path, path: Path) -> BackedUpFile:
    return BackedUpFile(
        path=path.relative_to(root).as_posix(), size=path.stat().st_size, sha256=_sha256(path)
    )


async def _receive_snapshot(js: JetStreamContext, stream: str, data_path: Path) -> dict[str, Any]:
    """Ask for a snapshot and write its chunks to `data_path`; return config and state."""
    nc = connection_of(js)  # nats-py has no snapshot API
    inbox = nc.new_inbox()
    # Subscribe before asking: the server starts sending right after it answers.
    subscription = await nc.subscribe(inbox)
    try:
        answer = await _api_request(
            js,
            _api(js, SNAPSHOT_API, stream),
            {"deliver_subject": inbox, "chunk_size": CHUNK_SIZE, "jsck": False},
        )
        with data_path.open("wb") as data:
            while True:
                try:
                    chunk = await subscription.next_msg(timeout=IDLE_TIMEOUT_S)
                except nats.errors.TimeoutError:
                    raise BackupError(
                        f"snapshot of {stream} stalled: no chunk for {IDLE_TIMEOUT_S:.0f}s"
                    ) from None
                if not chunk.data:
                    status = (chunk.headers or {}).get("Status", "")
                    if status and status != "204":
                        description = (chunk.headers or {}).get("Description", "")
                        raise BackupError(f"snapshot of {stream} failed: {status} {description}")
                    break
                # Flow control: the server sends a window of chunks, then waits for acks
                # (and gives up after a couple of seconds), so ack before writing.
                if chunk.reply:
                    await nc.publish(chunk.reply, b"")
                data.write(chunk.data)
    finally:
        await subscription.unsubscribe()
    return {"config": answer["config"], "state": answer["state"]}


async def backup_stream(js: JetStreamContext, root: Path, stream: str) -> StreamBackup:
    """Snapshot one stream (durable consumers included) into `<root>/<stream>/`."""
    stream_dir = root / stream
    stream_dir.mkdir(parents=True, exist_ok=True)
    data_path = stream_dir / DATA_FILE
    meta_path = stream_dir / META_FILE
    meta = await _receive_snapshot(js, stream, data_path)
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))
    state = meta["state"]
    return StreamBackup(
        name=stream,
        kind=kind_of(stream),
        messages=int(state.get("messages", 0)),
        bytes=int(state.get("bytes", 0)),
        first_seq=int(state.get("first_seq", 0)),
        last_seq=int(state.get("last_seq", 0)),
        consumers=int(state.get("consumer_count", 0)),
        replicas=int(meta["config"].get("num_replicas", 1)),
        # Hashing a large store takes a while: off the event loop, like the check on restore.
        files=[
            await asyncio.to_thread(_backed_up, root, meta_path),
            await asyncio.to_thread(_backed_up, root, data_path),
        ],
    )


async def backup_all(
    js: JetStreamContext, dir: Path | str, *, streams: Sequence[str] | None = None
) -> BackupReport:
    """Back up every stream (or the ones named) into `dir`, then write the manifest.

    `dir` must not hold a backup already: backups are never mixed or overwritten.
    Memory streams cannot be snapshotted; they are listed as skipped.
    """
    started = time.monotonic()
    root = Path(dir)
    if (root / MANIFEST_FILE).exists():
        raise BackupExists(
            f"{root} already holds a backup ({root / MANIFEST_FILE}): pick a new directory"
        )
    existing = await stream_names(js)
    chosen = list(streams) if streams is not None else existing
    unknown = sorted(set(chosen) - set(existing))
    if unknown:
        raise BackupError(f"no such streams: {', '.join(unknown)}")
    await asyncio.to_thread(root.mkdir, parents=True, exist_ok=True)
    created_at = datetime.now(UTC)
    backed_up: list[StreamBackup] = []
    skipped: list[SkippedStream] = []
    for name in chosen:
        info = await js.stream_info(name)
        if info.config.storage == StorageType.MEMORY:
            skipped.append(SkippedStream(name=name, reason="memory streams have no snapshot"))
            continue
        backed_up.append(await backup_stream(js, root, name))
    manifest = Manifest(created_at=created_at, streams=backed_up, skipped=skipped)
    # Written last and renamed into place: a manifest means every file it lists was complete.
    partial = root / f".{MANIFEST_FILE}.partial"
    partial.write_text(manifest.model_dump_json(indent=2))
    os.replace(partial, root / MANIFEST_FILE)
    return BackupReport(
        directory=str(root),
        created_at=created_at,
        streams=backed_up,
        skipped=skipped,
        duration_s=time.monotonic() - started,
    )


# -- verification ---------------------------------------------------------------------------
def read_manifest(dir: Path | str) -> Manifest:
    """The backup's manifest, once every file it lists is present and intact."""
    root = Path(dir)
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.exists():
        raise BackupCorrupted(
            f"{manifest_path} is missing: {root} is not a backup, or one that never finished"
        )
    try:
        manifest = Manifest.model_validate_json(manifest_path.read_text())
    except (ValidationError, UnicodeDecodeError) as error:
        raise BackupCorrupted(f"{manifest_path} is unreadable: {error}") from None
    if manifest.format != FORMAT:
        raise BackupCorrupted(f"{manifest_path}: format {manifest.format}, expected {FORMAT}")
    for stream in manifest.streams:
        for listed in stream.files:
            path = root / listed.path
            if not path.is_file():
                raise BackupCorrupted(f"{path} is missing from the backup")
            size = path.stat().st_size
            if size != listed.size:
                raise BackupCorrupted(
                    f"{path} is damaged: {size} bytes where the manifest says {listed.size}"
                )
            if _sha256(path) != listed.sha256:
                raise BackupCorrupted(
                    f"{path} is damaged: its SHA-256 does not match the manifest's"
                )
    return manifest


# -- restore --------------------------------------------------------------------------------
async def _send_snapshot(
    js: JetStreamContext, stream: str, meta: dict[str, Any], data_path: Path
) -> dict[str, Any]:
    """Send a snapshot to the server; return the restored stream's info as it answered."""
    nc = connection_of(js)  # nats-py has no snapshot API
    answer = await _start_restore(js, stream, meta)
    deliver = answer["deliver_subject"]
    with data_path.open("rb") as data:
        while chunk := data.read(CHUNK_SIZE):
            # Each chunk waits for the server's ack: that is the restore's flow control.
            reply = await _request(nc, deliver, chunk, IDLE_TIMEOUT_S)
            if reply.data:
                _raise_on_error(stream, reply.data)
    final = await _request(nc, deliver, b"", RESTORE_FINISH_TIMEOUT_S)
    return _raise_on_error(stream, final.data)


async def _start_restore(js: JetStreamContext, stream: str, meta: dict[str, Any]) -> dict[str, Any]:
    # A cluster just started (the usual target of a restore) can refuse placement for a moment
    # while its meta leader still counts a peer as offline; a refused request changed nothing.
    deadline = time.monotonic() + PLACEMENT_TIMEOUT_S
    while True:
        try:
            return await _api_request(js, _api(js, RESTORE_API, stream), meta)
        except APIError as error:
            if error.err_code != NO_SUITABLE_PEERS or time.monotonic() > deadline:
                raise BackupError(f"restore of {stream} refused: {error.description}") from None
            await asyncio.sleep(0.25)


async def _request(nc: NATS, subject: str, payload: bytes, timeout: float) -> Msg:
    # The server that took the restore subscribes to its deliver subject; until that interest
    # has crossed the routes to our server, a request finds no responder. Nobody received it,
    # so sending it again is safe (a timeout would not be: the chunk may have arrived).
    deadline = time.monotonic() + INTEREST_TIMEOUT_S
    while True:
        try:
            return await nc.request(subject, payload, timeout=timeout)
        except nats.errors.NoRespondersError:
            if time.monotonic() > deadline:
                raise BackupError(
                    f"nobody receives the restore on {subject}: the server that accepted it "
                    "went away; run the restore again with --replace"
                ) from None
            await asyncio.sleep(0.05)


async def _settled(js: JetStreamContext, stream: str, last_seq: int) -> StreamInfo:
    """The restored stream once it leads, holds the backup's last message on every replica
    and its consumers have leaders: before that, reads may land on an empty replica."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        try:
            info = await js.stream_info(stream)
            consumers = await js.consumers_info(stream)
        except (nats.errors.Error, TimeoutError):
            info, consumers = None, []  # no leader yet: ask again
        if (
            info is not None
            and _stream_settled(info, last_seq)
            and all(c.cluster is None or c.cluster.leader for c in consumers)
        ):
            return info
        if time.monotonic() > deadline:
            raise BackupError(
                f"restored stream {stream} did not settle in {SETTLE_TIMEOUT_S:.0f}s "
                f"(leader, last sequence {last_seq}, replicas current)"
            )
        await asyncio.sleep(0.1)


def _stream_settled(info: StreamInfo, last_seq: int) -> bool:
    if info.state.last_seq != last_seq:
        return False
    if info.cluster is None:
        return True
    replicas = info.cluster.replicas or []
    return bool(info.cluster.leader) and all(r.current and not r.lag for r in replicas)


def _raise_on_error(stream: str, body: bytes) -> dict[str, Any]:
    try:
        parsed: dict[str, Any] = json.loads(body)
    except ValueError:
        raise BackupError(f"restore of {stream}: unexpected answer {body[:200]!r}") from None
    error = parsed.get("error")
    if error:
        raise BackupError(
            f"restore of {stream} refused: {error.get('description', error)} "
            f"(code {error.get('err_code', '?')})"
        )
    return parsed


async def restore_all(
    js: JetStreamContext,
    dir: Path | str,
    *,
    replicas: int | None = None,
    replace: bool = False,
) -> RestoreReport:
    """Restore every stream of a backup into the cluster `js` talks to.

    The backup is checked whole before anything is sent. Streams that already exist are
    refused (nothing restored) unless `replace`, which deletes each before restoring it.
    `replicas` overrides the replica count each stream was backed up with.
    """
    started = time.monotonic()
    root = Path(dir)
    manifest = await asyncio.to_thread(read_manifest, root)
    metas = {s.name: _read_meta(root, s.name) for s in manifest.streams}
    existing = set(await stream_names(js))
    clashes = sorted(existing & set(metas))
    if clashes and not replace:
        raise StreamsExist(clashes)
    restored: list[StreamRestore] = []
    for stream in manifest.streams:
        meta = metas[stream.name]
        if replicas is not None:
            meta["config"]["num_replicas"] = replicas
        replaced = stream.name in existing
        if replaced:
            try:
                await js.delete_stream(stream.name)
            except NotFoundError:
                replaced = False  # deleted by someone else since we looked
        await _send_snapshot(js, stream.name, meta, root / stream.name / DATA_FILE)
        info = await _settled(js, stream.name, stream.last_seq)
        restored.append(
            StreamRestore(
                name=stream.name,
                kind=stream.kind,
                replicas=info.config.num_replicas or 1,
                replaced=replaced,
                messages_expected=stream.messages,
                messages=info.state.messages,
                last_seq_expected=stream.last_seq,
                last_seq=info.state.last_seq,
                consumers=info.state.consumer_count,
            )
        )
    return RestoreReport(
        directory=str(root),
        backup_created_at=manifest.created_at,
        streams=restored,
        duration_s=time.monotonic() - started,
    )


def _read_meta(root: Path, stream: str) -> dict[str, Any]:
    path = root / stream / META_FILE
    try:
        meta: dict[str, Any] = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as error:
        raise BackupCorrupted(f"{path} is unreadable: {error}") from None
    if not isinstance(meta.get("config"), dict) or meta["config"].get("name") != stream:
        # The server cannot rename a stream during a restore; a mismatch means a mixed-up dir.
        raise BackupCorrupted(f"{path} does not describe the stream {stream}")
    return {"config": meta["config"], "state": meta.get("state", {})}
