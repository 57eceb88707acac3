"""`mutualis events tail`: live events as they are published, decoded with the event catalog.

A core NATS subscription (not a JetStream consumer): it costs the servers nothing, leaves no
state behind and shows what happens from now on. Filtering by service and tenant is done by
the subject (`evt.<service>.<tenant>.>`), by type with a glob on the `ce-type` header.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from fnmatch import fnmatchcase

from nats.aio.msg import Msg
from rich.console import Console
from rich.markup import escape

from mutualis_cli.target import connect
from mutualis_kernel.events import InvalidEvent, decode
from mutualis_kernel.events.subjects import PREFIX


@dataclass(frozen=True)
class TailFilter:
    tenant: str | None = None
    type_pattern: str | None = None
    service: str | None = None

    @property
    def subject(self) -> str:
        if self.service is None and self.tenant is None:
            return f"{PREFIX}.>"
        return f"{PREFIX}.{self.service or '*'}.{self.tenant or '*'}.>"

    def accepts_type(self, type_name: str | None) -> bool:
        if self.type_pattern is None:
            return True
        return type_name is not None and fnmatchcase(type_name, self.type_pattern)


def describe(msg: Msg) -> str:
    """One line (plus the payload) for a message: the event, or why it is not one."""
    try:
        envelope = decode(msg.subject, msg.headers, msg.data)
    except InvalidEvent as error:
        return f"[red]undecodable[/] {escape(msg.subject)}: {escape(error.reason)}"
    payload = json.dumps(envelope.data.model_dump(mode="json"), ensure_ascii=False)
    extras = ""
    if envelope.correlation_id:
        extras += f" correlation={escape(envelope.correlation_id)}"
    if envelope.datacenter:
        extras += f" dc={escape(envelope.datacenter)}"
    return (
        f"[dim]{envelope.time.isoformat()}[/] [bold]{escape(envelope.type)}[/] "
        f"tenant={escape(envelope.tenant)} {escape(envelope.ce_subject)} id={envelope.id}"
        f"{extras}\n    {escape(payload)}"
    )


async def tail(
    urls: list[str],
    chosen: TailFilter,
    console: Console,
    *,
    count: int | None = None,
    timeout: float | None = None,
) -> int:
    """Print matching events until `count` were shown, `timeout` elapsed, or cancellation."""
    nc = await connect(urls)
    shown = 0
    done = asyncio.Event()

    async def on_message(msg: Msg) -> None:
        nonlocal shown
        if done.is_set():
            return
        headers = msg.headers or {}
        if not chosen.accepts_type(headers.get("ce-type")):
            return
        console.print(describe(msg), highlight=False, soft_wrap=True)
        shown += 1
        if count is not None and shown >= count:
            done.set()

    try:
        await nc.subscribe(chosen.subject, cb=on_message)
        await nc.flush()
        console.print(f"[dim]listening on {chosen.subject}…[/]", highlight=False)
        with contextlib.suppress(TimeoutError):  # --timeout elapsed: a normal end
            await asyncio.wait_for(done.wait(), timeout)
    finally:
        await nc.close()
    return shown
