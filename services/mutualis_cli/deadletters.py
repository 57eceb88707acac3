"""`mutualis dlq`: read the DEAD_LETTERS stream and send chosen dead letters back for replay.

A replay goes to `replay.<durable>` in REPLAYS, which only that durable consumer reads, with
the dead letter's body and carried headers (its `Mutualis-Dead-*` headers included, so the
consumer still knows the original subject), plus `Mutualis-Replay-Of: <dlq seq>` and
`Nats-Msg-Id: replay:<dlq seq>` so replaying the same dead letter twice in the duplicate
window publishes it once. The dead letter is deleted only after REPLAYS acknowledged it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from mutualis_kernel.bus import deadletter
from mutualis_kernel.streams import DEAD_LETTER_STREAM, REPLAY_STREAM

MSG_ID = "Nats-Msg-Id"


class DeadLetter(BaseModel):
    seq: int
    consumer: str
    reason: str | None
    original_subject: str | None
    original_stream: str | None
    original_sequence: int | None
    deliveries: int | None
    dead_at: str | None
    stored_at: datetime | None
    size: int


class ReplayOutcome(BaseModel):
    seq: int
    consumer: str
    replay_subject: str
    replay_seq: int | None
    duplicate: bool
    deleted: bool


class DeadLetterMissing(LookupError):
    pass


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _durable_of(message: RawStreamMsg) -> str:
    headers = message.headers or {}
    subject = message.subject or ""
    return headers.get(deadletter.CONSUMER) or subject.removeprefix(
        f"{deadletter.DEAD_LETTER_PREFIX}."
    )


def describe(message: RawStreamMsg) -> DeadLetter:
    headers = message.headers or {}
    return DeadLetter(
        seq=message.seq or 0,
        consumer=_durable_of(message),
        reason=headers.get(deadletter.REASON),
        original_subject=headers.get(deadletter.SUBJECT),
        original_stream=headers.get(deadletter.STREAM),
        original_sequence=_int(headers.get(deadletter.SEQUENCE)),
        deliveries=_int(headers.get(deadletter.DELIVERIES)),
        dead_at=headers.get(deadletter.TIME),
        stored_at=message.time,
        size=len(message.data or b""),
    )


def _filter(consumer: str | None) -> str:
    if consumer:
        return deadletter.dead_letter_subject(consumer)
    return f"{deadletter.DEAD_LETTER_PREFIX}.>"


async def read_dead_letters(
    js: JetStreamContext, consumer: str | None = None
) -> list[RawStreamMsg]:
    """Every dead letter (of one consumer, if given), oldest first.

    One "next message on this subject from seq" request each: simple, exact with interior
    deletions, and dead letters are few by nature.
    """
    found: list[RawStreamMsg] = []
    subject = _filter(consumer)
    seq = 1
    while True:
        try:
            message = await js.get_msg(DEAD_LETTER_STREAM, seq=seq, subject=subject, next=True)
        except NotFoundError:
            return found
        found.append(message)
        seq = (message.seq or seq) + 1


async def get_dead_letter(js: JetStreamContext, seq: int) -> RawStreamMsg:
    try:
        message = await js.get_msg(DEAD_LETTER_STREAM, seq=seq)
    except NotFoundError:
        raise DeadLetterMissing(
            f"no dead letter with sequence {seq} in {DEAD_LETTER_STREAM}"
        ) from None
    if not (message.subject or "").startswith(f"{deadletter.DEAD_LETTER_PREFIX}."):
        raise DeadLetterMissing(f"message {seq} of {DEAD_LETTER_STREAM} is not a dead letter")
    return message


async def replay(js: JetStreamContext, message: RawStreamMsg, *, keep: bool) -> ReplayOutcome:
    seq = message.seq or 0
    durable = _durable_of(message)
    subject = deadletter.replay_subject(durable)
    headers = deadletter.carried_headers(message.headers)
    headers[deadletter.REPLAY_OF] = str(seq)
    headers[MSG_ID] = f"replay:{seq}"
    ack = await js.publish(subject, message.data or b"", headers=headers, stream=REPLAY_STREAM)
    deleted = False
    if not keep:
        deleted = await js.delete_msg(DEAD_LETTER_STREAM, seq)
    return ReplayOutcome(
        seq=seq,
        consumer=durable,
        replay_subject=subject,
        replay_seq=ack.seq,
        duplicate=bool(ack.duplicate),
        deleted=deleted,
    )


async def replay_many(
    js: JetStreamContext,
    seqs: Sequence[int],
    *,
    all_of: bool,
    consumer: str | None,
    keep: bool,
) -> list[ReplayOutcome]:
    if all_of:
        messages = await read_dead_letters(js, consumer)
    else:
        messages = [await get_dead_letter(js, seq) for seq in seqs]
        if consumer:
            messages = [m for m in messages if _durable_of(m) == consumer]
    return [await replay(js, message, keep=keep) for message in messages]


def render_list(letters: Sequence[DeadLetter], console: Console) -> None:
    if not letters:
        console.print("no dead letters")
        return
    table = Table(title=f"{DEAD_LETTER_STREAM} ({len(letters)})")
    for column in ("seq", "consumer", "original subject", "deliveries", "dead at", "reason"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        table.add_row(
            str(letter.seq),
            letter.consumer,
            letter.original_subject or "-",
            str(letter.deliveries) if letter.deliveries is not None else "-",
            letter.dead_at or (letter.stored_at.isoformat() if letter.stored_at else "-"),
            letter.reason or "-",
        )
    console.print(table)
