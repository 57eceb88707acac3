"""The audit trail: security-relevant events of every service, read back from their streams.

There is no audit store of its own: the services' event streams are kept forever and already
record who logged in, who was granted a role, who signed, who read or disposed of a record.
Each service declares which of its event types count as security-relevant (`AuditRule`s in
its manifest's `audited`); this module owns how to read an actor and an object out of each (by
field name: the kernel imports no service), and a reader that lists them for one tenant since
a time, in time order.

The reader uses an ephemeral, acknowledgement-free consumer per stream, started at the given
time and filtered on the tenant's subjects; it never changes a stream and leaves nothing
behind (the consumer expires on its own if the reader dies).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import nats.errors
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError, ServiceUnavailableError
from pydantic import BaseModel

from mutualis_kernel.bus import pull
from mutualis_kernel.events.registry import type_name


@dataclass(frozen=True)
class AuditRule:
    """How one event type reads as an audit entry.

    `actor_fields`: payload fields naming who acted, first present wins (a login's actor is
    the person who logged in; a disposal's is who approved it). `object_fields`: payload fields
    naming what was acted on; the aggregate id is used when none is present.
    """

    service: str
    event_name: str
    action: str
    actor_fields: tuple[str, ...] = ()
    object_fields: tuple[str, ...] = ()
    version: int = 1

    @property
    def type_name(self) -> str:
        return type_name(self.service, self.event_name, self.version)


def installed_rules() -> tuple[AuditRule, ...]:
    """The audit rules every installed service declares in its manifest (`audited`).

    The kernel names no event type itself: a service whose event is security-relevant says
    so beside its other declarations, and the trail lists it."""
    from mutualis_kernel.service import installed_manifests  # the manifests import AuditRule

    return tuple(rule for manifest in installed_manifests() for rule in manifest.audited)


class AuditEntry(BaseModel):
    """One security-relevant action, as the trail lists it."""

    time: datetime
    tenant: str
    service: str
    action: str
    actor: str | None
    object: str
    event_id: str
    event_type: str
    stream_sequence: int | None = None


def _first(payload: Mapping[str, Any], fields: Iterable[str]) -> str | None:
    for name in fields:
        value = payload.get(name)
        if value not in (None, ""):
            return str(value)
    return None


def entry_from(
    rule: AuditRule,
    subject: str,
    headers: Mapping[str, str],
    body: bytes,
    stream_sequence: int | None = None,
) -> AuditEntry | None:
    """The audit entry for one stored event, or None when it cannot be read as one."""
    try:
        payload = json.loads(body)
        when = datetime.fromisoformat(headers["ce-time"])
    except (KeyError, ValueError):
        return None
    if not isinstance(payload, dict):
        return None
    tokens = subject.split(".")
    aggregate_id = tokens[4] if len(tokens) == 7 else headers.get("ce-subject", "")
    return AuditEntry(
        time=when if when.tzinfo else when.replace(tzinfo=UTC),
        tenant=headers.get("ce-tenant", ""),
        service=rule.service,
        action=f"{rule.service}.{rule.action}",
        actor=_first(payload, rule.actor_fields),
        object=_first(payload, rule.object_fields) or aggregate_id,
        event_id=headers.get("ce-id", ""),
        event_type=rule.type_name,
        stream_sequence=stream_sequence,
    )


class AuditReader:
    """Lists a tenant's audit entries from the services' event streams."""

    def __init__(
        self,
        js: JetStreamContext,
        rules: Sequence[AuditRule] | None = None,
        *,
        batch: int = 256,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self._js = js
        if rules is None:
            rules = installed_rules()
        self._rules = {rule.type_name: rule for rule in rules}
        self._services = sorted({rule.service for rule in rules})
        self._batch = batch
        self._fetch_timeout_s = fetch_timeout_s

    async def entries(self, tenant: str, since: datetime) -> list[AuditEntry]:
        """Every audited event of `tenant` stored since `since`, oldest first."""
        found: list[AuditEntry] = []
        for service in self._services:
            found.extend(await self._read_stream(service, tenant, since))
        found.sort(key=lambda entry: (entry.time, entry.service, entry.stream_sequence or 0))
        return found

    async def _read_stream(self, service: str, tenant: str, since: datetime) -> list[AuditEntry]:
        stream = f"{service.upper()}_EVENTS"
        try:
            await self._js.stream_info(stream)
        except NotFoundError:
            return []  # a service not installed here has nothing to audit
        start = since if since.tzinfo else since.replace(tzinfo=UTC)
        if start > datetime.now(UTC):
            return []  # nothing has happened yet after a moment still to come
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_TIME,
            opt_start_time=start.astimezone(UTC),
            ack_policy=AckPolicy.NONE,
            # Gone by itself if this reader crashes before unsubscribing.
            inactive_threshold=30.0,
            filter_subjects=[f"evt.{service}.{tenant}.>"],
        )
        subscription = await self._js.pull_subscribe(
            f"evt.{service}.{tenant}.>", stream=stream, config=config
        )
        entries: list[AuditEntry] = []
        unavailable = 0
        try:
            while True:
                try:
                    messages = await pull.fetch(subscription, self._batch, self._fetch_timeout_s)
                except (TimeoutError, nats.errors.TimeoutError):
                    break
                except ServiceUnavailableError:
                    # The clustered consumer is not ready on every peer yet: ask again.
                    unavailable += 1
                    if unavailable > 20:
                        raise
                    await asyncio.sleep(0.1)
                    continue
                pending = 0
                for message in messages:
                    pending = message.metadata.num_pending
                    headers = message.headers or {}
                    rule = self._rules.get(headers.get("ce-type", ""))
                    if rule is None:
                        continue
                    sequence = message.metadata.sequence
                    entry = entry_from(
                        rule,
                        message.subject,
                        headers,
                        message.data,
                        sequence.stream if sequence else None,
                    )
                    if entry is not None:
                        entries.append(entry)
                if pending == 0:
                    break
        finally:
            # Should this fail, the ephemeral consumer expires on its own.
            with contextlib.suppress(TimeoutError, nats.errors.Error):
                await subscription.unsubscribe()
        return entries
