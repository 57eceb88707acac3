"""Email over SMTP with aiosmtplib: STARTTLS when configured (then required), AUTH, failover.

A mail is handed off in three phases, and what a failure means depends on the phase:

1. the session (connect, greeting, EHLO, STARTTLS, AUTH): any failure means this relay is
   unavailable and nothing of the mail reached it -> the secondary relay is tried;
2. the envelope (MAIL FROM, RCPT TO): a 4xx/5xx reply is the relay's judgement of this mail
   (4xx -> temporary failure, 5xx -> permanent, no failover); a disconnect or timeout means
   the relay is unavailable, still with nothing accepted -> failover;
3. the content, from the DATA command on: the service layer's `hand_off` callback is awaited
   just before it (the ledger records that the hand-off began); a 4xx/5xx reply is again a
   judgement, but a disconnect or timeout is *ambiguous* -- the relay may have queued the
   mail before the connection broke -- so it is neither retried nor failed over
   (`DeliveryAmbiguous`, at-most-once).

Every attempt on a relay is counted by `DomainMetrics.smtp_attempt` with the relay's role
(`primary`, or `fallback` once we failed over), which the SMTP failover alerts watch.

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
from aiosmtplib.email import flatten_message

from mutualis_kernel.metrics import DomainMetrics, RelayRole
from notifications.service_layer.ports import (
    Accepted,
    DeliveryAmbiguous,
    DeliveryError,
    HandOff,
    OutgoingEmail,
)

#: Errors that mean the connection broke or the relay stopped answering (not a reply).
_CONNECTION_ERRORS = (aiosmtplib.SMTPException, OSError, TimeoutError)


class RelayUnavailable(DeliveryError):
    """The relay could not take the mail, and provably did not: the next relay may."""

    def __init__(self, reason: str, provider: str) -> None:
        super().__init__(reason, permanent=False, provider=provider)


def _judgement(name: str, error: aiosmtplib.SMTPResponseException) -> DeliveryError:
    return DeliveryError(
        f"{name}: {error.code} {error.message}",
        permanent=500 <= error.code < 600,
        provider=name,
    )


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
        # message even if an operator ever resends an ambiguous one.
        message["Message-ID"] = email.message_id
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.text)
        if email.html:
            message.add_alternative(email.html, subtype="html")
        return message

    async def _session(self) -> aiosmtplib.SMTP:
        """A fresh session ready for a transaction; `RelayUnavailable` when there is none."""
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
        try:
            await client.connect()
            if client.is_ehlo_or_helo_needed:
                await client.ehlo()
        except _CONNECTION_ERRORS as error:
            # Greeting, EHLO, STARTTLS and AUTH refusals included: the mail was never offered.
            client.close()
            raise RelayUnavailable(
                f"{self.name}: {type(error).__name__}: {error}", self.name
            ) from None
        return client

    def _take_idle(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            client, since = self._idle.pop()
            if client.is_connected and now - since < self.idle_timeout_s:
                return client
            client.close()
        return None

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if len(self._idle) < self.pool_size and client.is_connected:
            self._idle.append((client, time.monotonic()))
        else:
            client.close()

    async def _envelope(self, client: aiosmtplib.SMTP, message: EmailMessage, to: str) -> bytes:
        """MAIL FROM and RCPT TO on `client`; the content to send after DATA."""
        eight_bit = client.supports_extension("8BITMIME")
        await client.mail(self.sender, options=["BODY=8BITMIME"] if eight_bit else [])
        await client.rcpt(to)
        return flatten_message(message, cte_type="8bit" if eight_bit else "7bit")

    async def _open_transaction(
        self, message: EmailMessage, to: str
    ) -> tuple[aiosmtplib.SMTP, bytes]:
        """A session with the envelope accepted, and the content; nothing accepted yet."""
        client = self._take_idle()
        if client is not None:
            try:
                return client, await self._envelope(client, message, to)
            except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
                # The relay closed a pooled session while it sat idle: nothing of this mail
                # reached it, so a fresh session is the first real attempt, not a second.
                client.close()
            except aiosmtplib.SMTPResponseException as error:
                client.close()
                raise _judgement(self.name, error) from None
            except _CONNECTION_ERRORS as error:
                client.close()
                raise RelayUnavailable(f"{self.name}: {type(error).__name__}", self.name) from None
        client = await self._session()
        try:
            return client, await self._envelope(client, message, to)
        except aiosmtplib.SMTPResponseException as error:
            # MAIL or RCPT refused: the relay judged this mail; another relay must not
            # be asked to overrule it.
            client.close()
            raise _judgement(self.name, error) from None
        except _CONNECTION_ERRORS as error:
            client.close()
            raise RelayUnavailable(
                f"{self.name}: {type(error).__name__} before DATA", self.name
            ) from None

    async def send(self, email: OutgoingEmail, hand_off: HandOff) -> Accepted:
        client, content = await self._open_transaction(self.build(email), email.to)
        try:
            await hand_off(self.name)
        except BaseException:
            # The attempt is no longer ours (or the ledger cannot say it began): send
            # nothing, and never hand a session with an open envelope to the next mail.
            client.close()
            raise
        try:
            await client.data(content)
        except aiosmtplib.SMTPResponseException as error:
            # A reply: the relay refused DATA or the content, it did not take the mail.
            client.close()
            raise _judgement(self.name, error) from None
        except _CONNECTION_ERRORS as error:
            client.close()
            raise DeliveryAmbiguous(
                f"{self.name}: {type(error).__name__} after DATA; the relay may have "
                "accepted the message",
                self.name,
            ) from None
        self._give_back(client)
        return Accepted(provider=self.name, message_id=email.message_id)

    async def aclose(self) -> None:
        """Say goodbye to the relay on every pooled connection (at shutdown)."""
        idle, self._idle = self._idle, []
        for client, _ in idle:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await client.quit()
            client.close()


class FailoverEmail:
    """The primary relay, then the secondary when the primary provably did not take the mail.

    Only `RelayUnavailable` fails over: a relay that replied 4xx or 5xx has judged the mail,
    and one whose connection broke after DATA may have taken it; asking another relay would
    hide a real refusal or risk a duplicate.
    """

    def __init__(self, relays: list[SmtpRelay], metrics: DomainMetrics | None = None) -> None:
        self.relays = relays
        self.metrics = metrics

    def _count(self, relay: SmtpRelay, role: RelayRole, *, ok: bool) -> None:
        if self.metrics is not None:
            self.metrics.smtp_attempt(relay.host, role, ok)

    async def send(self, email: OutgoingEmail, hand_off: HandOff) -> Accepted:
        last: DeliveryError | None = None
        for index, relay in enumerate(self.relays):
            role: RelayRole = "primary" if index == 0 else "fallback"
            try:
                accepted = await relay.send(email, hand_off)
            except RelayUnavailable as error:
                self._count(relay, role, ok=False)
                last = error
                continue
            except DeliveryError:
                self._count(relay, role, ok=False)
                raise
            self._count(relay, role, ok=True)
            return accepted
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for relay in self.relays:
            await relay.aclose()
