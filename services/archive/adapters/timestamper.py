"""The `Timestamper` port over an RFC 3161 TSA, through `mutualis_trust.tsa` (verification
is `openssl ts -verify` against the configured CA, never against the chain stored in a seal)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from archive.service_layer.ports import TimestampRefused
from mutualis_trust.metrics import TrustMetrics
from mutualis_trust.tsa import (
    TimestampError,
    TimestampVerificationError,
    timestamp,
    verify_timestamp,
)


class RemoteTsa:
    def __init__(
        self,
        url: str,
        ca_file: Path,
        chain_file: Path | None = None,
        *,
        metrics: TrustMetrics | None = None,
    ) -> None:
        self.url = url
        self.ca_file = ca_file
        self.chain_file = chain_file or ca_file
        #: Journal seals count towards the TSA alerts like signatures do.
        self.metrics = metrics

    async def timestamp(self, data: bytes) -> bytes:
        try:
            token = await timestamp(self.url, data, metrics=self.metrics)
        except TimestampError as error:
            raise TimestampRefused(str(error)) from None
        return token.response_der

    async def verify(self, data: bytes, tsr: bytes) -> str | None:
        try:
            await asyncio.to_thread(verify_timestamp, tsr, data, self.ca_file)
        except TimestampVerificationError as error:
            return str(error)[:500]
        return None

    def chain_pem(self) -> str:
        return self.chain_file.read_text()
