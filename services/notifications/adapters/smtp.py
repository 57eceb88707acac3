"""Email over SMTP with aiosmtplib: STARTTLS when configured (then required), AUTH, failover.

SMTP replies map to the delivery status machine: 4xx -> temporary failure, 5xx -> permanent
failure, a relay that cannot be reached -> try the secondary relay, then temporary failure.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate

import aiosmtplib

from notifications.service_layer.ports import Accepted, DeliveryError, OutgoingEmail


@dataclass(frozen=True)
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

    async def send(self, email: OutgoingEmail) -> Accepted:
        message = self.build(email)
        try:
            await aiosmtplib.send(
                message,
                hostname=self.host,
                port=self.port,
                username=self.username,
                password=self.password,
                # Required, not opportunistic: a relay that does not offer STARTTLS fails.
                start_tls=bool(self.starttls),
                tls_context=self._tls_context() if self.starttls else None,
                timeout=self.timeout_s,
            )
        except aiosmtplib.SMTPRecipientsRefused as error:
            codes = [r.code for r in error.recipients]
            permanent = all(code >= 500 for code in codes)
            raise DeliveryError(
                f"{self.name}: recipient refused {codes}", permanent=permanent, provider=self.name
            ) from None
        except aiosmtplib.SMTPResponseException as error:
            raise DeliveryError(
                f"{self.name}: {error.code} {error.message}",
                permanent=500 <= error.code < 600,
                provider=self.name,
            ) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
            raise RelayUnavailable(
                f"{self.name}: {type(error).__name__}: {error}", self.name
            ) from None
        return Accepted(provider=self.name, message_id=email.message_id)


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
