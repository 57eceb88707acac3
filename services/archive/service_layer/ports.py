"""Ports of the archive's service layer: what it needs from the outside world."""

from __future__ import annotations

from typing import Protocol


class TimestampRefused(Exception):
    """The TSA could not or would not timestamp (the seal is not stored; retry later)."""


class Timestamper(Protocol):
    """An RFC 3161 timestamp authority and the trust anchors its tokens verify against."""

    async def timestamp(self, data: bytes) -> bytes:
        """The DER TimeStampResp (`.tsr`) over SHA-256(`data`)."""
        ...

    async def verify(self, data: bytes, tsr: bytes) -> str | None:
        """None when `tsr` is a valid token over `data` from a trusted TSA, else the reason."""
        ...

    def chain_pem(self) -> str:
        """The certificate chain to export with seals (TSA certificate and its CA)."""
        ...
