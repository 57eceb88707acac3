"""Domain errors: each names a rule of the parapheur; the API maps them to 4xx with a code."""

from __future__ import annotations


class ParapheurError(Exception):
    """A command the rules refuse; nothing was recorded."""

    code = "refused"
    status = 409

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class FolderNotFound(ParapheurError):
    code = "folder_not_found"
    status = 404


class CircuitNotFound(ParapheurError):
    code = "unknown_circuit"
    status = 404


class InvalidCircuit(ParapheurError):
    code = "invalid_circuit"
    status = 422


class FolderClosed(ParapheurError):
    """The folder is signed, rejected or withdrawn: nothing more happens to it."""

    code = "folder_closed"
    status = 409


class AlreadySubmitted(ParapheurError):
    code = "already_submitted"
    status = 409


class StepNotCurrent(ParapheurError):
    code = "step_not_current"
    status = 409


class WrongAction(ParapheurError):
    """Approving a signature step, signing a visa, acting by hand on a seal."""

    code = "wrong_action"
    status = 409


class NotAnActor(ParapheurError):
    code = "not_an_actor"
    status = 403


class AlreadyActed(ParapheurError):
    code = "already_acted"
    status = 409


class StepUpRequired(ParapheurError):
    """Signing needs a session at the substantial assurance level."""

    code = "insufficient_user_authentication"
    status = 403


class TakeBackRefused(ParapheurError):
    code = "take_back_refused"
    status = 409


class InvalidDelegation(ParapheurError):
    code = "invalid_delegation"
    status = 422


class ConcurrentAction(ParapheurError):
    """Someone acted on the folder at the same moment and won; reload and decide again."""

    code = "concurrent_action"
    status = 409


class DelegationNotFound(ParapheurError):
    code = "delegation_not_found"
    status = 404


class NotSubmitted(ParapheurError):
    """The folder is still a draft: submit it first."""

    code = "not_submitted"
    status = 409
