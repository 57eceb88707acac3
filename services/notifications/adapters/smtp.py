"""Email over SMTP with aiosmtplib: STARTTLS when configured (then required), AUTH, failover.

SMTP replies map to the delivery status machine: 4xx -> temporary failure, 5xx -> permanent
failure, a relay that cannot be reached -> try the secondary relay, then temporary failure.

Connections are kept open between mails (a small pool per relay): connecting, EHLO, STARTTLS
and AUTH cost more than the mail itself on a busy relay. A pooled connection is only reused
when its last transaction ended cleanly, and is dropped once idle longer than
`idle_timeout_s` (relays close idle sessions; RFC 5321 asks them to wait at least 5 minutes).
"""

from __future__ import annotations

import contextlib
import ssl
import time
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from notifications.service_layer.ports import Accepted, DeliveryError, OutgoingEmail


@dataclass
class SmtpRelay:
    name: str
    host: str
    port: int
    starttls: bool = False
    username: str | None = None
    password: str | None = None
    ca_file: str | None = None
    timeout_s: float = 10.0
    sender: str = "ne-pas-repondre@mutualis.example"
    #: Idle connections kept per relay; 0 opens a connection per mail.
    pool_size: int = 4
    idle_timeout_s: float = 60.0
    _idle: list[tuple[aiosmtplib.SMTP, float]] = field(default_factory=list, repr=False)

    def _tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context

    def build(self, email: OutgoingEmail) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = email.to
        message["Subject"] = email.subject
        message["Date"] = formatdate(localtime=False)
        # Deterministic per notification: a receiver that dedupes on Message-ID sees one
        # message even if an ambiguous hand-off were ever retried.
        message["Message-ID"] = email.message_id
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        if email.html:
            message.add_alternative(email.html, subtype="html")
        return message

    async def _connect(self) -> aiosmtplib.SMTP:
        client = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            username=self.username,
            password=self.password,
            # Required, not opportunistic: a relay that does not offer STARTTLS fails.
            start_tls=bool(self.starttls),
            tls_context=self._tls_context() if self.starttls else None,
            timeout=self.timeout_s,
        )
        await client.connect()
        return client

    def _take_idle(self) -> tuple[aiosmtplib.SMTP | None, bool]:
        """A live pooled connection, if any, and whether it was one (else: connect)."""
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.idle_timeout_s:
                return client, True
            client.close()
        return None, False

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.pool_size and client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    async def send(self, email: OutgoingEmail) -> Accepted:
        message = self.build(email)
        client, reused = self._take_idle()
        try:
            if client is None:
                client = await self._connect()
            try:
                await client.send_message(message)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                if not reused:
                    raise
                # The relay closed a pooled session while it sat idle: nothing of this mail
                # reached it (the command could not even be written), so a fresh session is
                # the first real attempt, not a second send.
                client.close()
                client = None
                client = await self._connect()
                await client.send_message(message)
        except aiosmtplib.SMTPRecipientsRefused as error:
            self._discard(client)
            codes = [r.code for r in error.recipients]
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(
                f"{self.name}: recipient refused {codes}", permanent=permanent, provider=self.name
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            self._discard(client)
            raise DeliveryError(
                f"{self.name}: {error.code} {error.message}",
                permanent=500 <= error.code < 600,
                provider=self.name,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            self._discard(client)
            raise RelayUnavailable(
                f"{self.name}: {type(error).__name__}: {error}", self.name
            ) from None
        self._give_back(client)
        return Accepted(provider=self.name, message_id=email.message_id)

    @staticmethod
    def _discard(client: aiosmtplib.SMTP | None) -> None:
        # After a refusal the session state is unknown to us: never hand it to the next mail.
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Say goodbye to the relay on every pooled connection (at shutdown)."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()
            client.close()


class RelayUnavailable(DeliveryError):
    def __init__(self, reason: str, provider: str) -> None:
        super().__init__(reason, permanent=False, provider=provider)


class FailoverEmail:
    """The primary relay, then the secondary when the primary cannot be reached at all.

    Only connection-level failures fail over: a relay that answered 4xx or 5xx has judged
    the message, and asking another one would risk a duplicate or hide a real refusal.
    """

    def __init__(self, relays: list[SmtpRelay]) -> None:
        self.relays = relays

    async def send(self, email: OutgoingEmail) -> Accepted:
        last: DeliveryError | None = None
        for relay in self.relays:
            try:
                return await relay.send(email)
            except RelayUnavailable as error:
                last = error
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for relay in self.relays:
            await relay.aclose()
