"""Domain errors of the archive, each with a stable code and the HTTP status the edge maps it to."""

from __future__ import annotations


class ArchiveError(Exception):
    code = "archive_error"
    status = 400

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidMetadata(ArchiveError):
    code = "invalid_metadata"
    status = 422


class HashMismatch(ArchiveError):
    code = "hash_mismatch"
    status = 422


class RecordNotFound(ArchiveError):
    code = "record_not_found"
    status = 404


class RecordDisposed(ArchiveError):
    code = "record_disposed"
    status = 410


class DisposalRefused(ArchiveError):
    code = "disposal_refused"
    status = 409


class HoldNotFound(ArchiveError):
    code = "hold_not_found"
    status = 404


class NothingToSeal(ArchiveError):
    code = "nothing_to_seal"
    status = 409


class SealNotFound(ArchiveError):
    code = "seal_not_found"
    status = 404


class InvalidPackage(ArchiveError):
    code = "invalid_package"
    status = 422
