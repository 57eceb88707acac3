"""SMS through HTTP gateways: one interface, a generic JSON/HTTP provider, failover.

The generic provider POSTs `{"to", "text", "reference", "tenant"}` and expects 2xx with an
optional `{"id": ...}`. 4xx (except 408/429) is a permanent refusal; 5xx, 408 and 429 are
the gateway saying it did not take the message, and so is a request that never left (no
connection, connection timeout): those make the next gateway try. Any other network error
(a read timeout, a connection dropped before the answer) comes after the gateway may have
received the request: ambiguous, neither retried nor failed over. French operators plug in
as other classes with the same `send`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httpx

from notifications.service_layer.ports import (
    Accepted,
    DeliveryAmbiguous,
    DeliveryError,
    HandOff,
    OutgoingSms,
)

#: httpx errors raised before any byte of the request was written.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)


@dataclass
class JsonHttpGateway:
    name: str
    url: str
    token: str | None = None
    timeout_s: float = 10.0
    # One client per gateway, opened on first use: its connections are kept alive between
    # messages instead of a TCP (and TLS) handshake per SMS.
    _client: httpx.AsyncClient | None = field(default=None, repr=False)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(timeout=self.timeout_s)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def send(self, sms: OutgoingSms, hand_off: HandOff) -> Accepted:
        headers = {"Idempotency-Key": sms.reference}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        body = {"to": sms.to, "text": sms.text, "reference": sms.reference, "tenant": sms.tenant}
        # httpx connects inside `post`, so the hand-off is recorded before it: a crash while
        # connecting is then counted as ambiguous, the safe side.
        await hand_off(self.name)
        try:
            response = await self._http().post(self.url, json=body, headers=headers)
        except _NOT_SENT as error:
            raise DeliveryError(
                f"{self.name}: {type(error).__name__}", permanent=False, provider=self.name
            ) from None
        except httpx.HTTPError as error:
            raise DeliveryAmbiguous(
                f"{self.name}: {type(error).__name__} after the request was sent; the gateway "
                "may have accepted the message",
                self.name,
            ) from None
        if response.is_success:
            # Accepted whatever the body says: a receipt id we cannot read must not turn a
            # delivered SMS into a failure (and a retry, a second SMS).
            try:
                answer = response.json()
            except ValueError:
                answer = None
            ident = answer.get("id") if isinstance(answer, dict) else None
            return Accepted(provider=self.name, message_id=str(ident) if ident else None)
        permanent = 400 <= response.status_code < 500 and response.status_code not in (408, 429)
        raise DeliveryError(
            f"{self.name}: HTTP {response.status_code}", permanent=permanent, provider=self.name
        )


class FailoverSms:
    """The gateways in turn while each says it did not take the message (never past a
    refusal or an ambiguous outcome, both permanent)."""

    def __init__(self, gateways: list[JsonHttpGateway]) -> None:
        self.gateways = gateways

    async def send(self, sms: OutgoingSms, hand_off: HandOff) -> Accepted:
        last: DeliveryError | None = None
        for gateway in self.gateways:
            try:
                return await gateway.send(sms, hand_off)
            except DeliveryError as error:
                if error.permanent:
                    raise
                last = error
        assert last is not None
        raise last

    async def aclose(self) -> None:
        for gateway in self.gateways:
            await gateway.aclose()
