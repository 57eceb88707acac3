"""How identity's events fold into the documents its KV projections hold (pure, no I/O).

The stream is the record; a document is what the events of one aggregate add up to. The same
fold serves the request that appended the events (read-your-writes), the projector consumer
that repairs whatever a crash left behind, and a command that catches up on events its
snapshot has not seen yet. Documents carry `seq`, the stream sequence of the last event
folded in; writers skip an event whose sequence is not newer.

An erased account folds into a tombstone (`erased: true`, no personal data) rather than
nothing, so that a late redelivery of its registration cannot bring it back.
"""

from __future__ import annotations

from typing import Any

from identity.domain.events import (
    ClientRegistered,
    RoleGranted,
    RoleRevoked,
    UserErased,
    UserRegistered,
    UserUpdated,
)
from identity.domain.model import AUDIENCES
from identity.domain.security import secret_digest
from mutualis_kernel.events import Event

Doc = dict[str, Any]

#: Events that change an account's document (the others are security facts about it).
USER_STATE_EVENTS = (UserRegistered, UserUpdated, RoleGranted, RoleRevoked, UserErased)


def apply_user(doc: Doc | None, event: Event) -> Doc | None:
    """The account document after `event`; None while the account was never registered."""
    if isinstance(event, UserRegistered):
        if doc is not None:
            return doc  # registered once; a second registration of one id changes nothing
        return {
            "id": event.user_id,
            "username": event.username or "",
            "kind": event.kind,
            "tenant": event.tenant,
            "email": event.email,
            "name": event.name or "",
            "roles": sorted(event.roles),
            "disabled": False,
            "erased": False,
        }
    if doc is None or doc.get("erased"):
        return doc
    if isinstance(event, UserUpdated):
        return {**doc, "disabled": event.disabled}
    if isinstance(event, RoleGranted | RoleRevoked):
        return {**doc, "roles": sorted(event.roles)}
    if isinstance(event, UserErased):
        # The username's digest (already the index key) lets a retried fold find the index
        # entry to remove; nothing readable about the person remains.
        return {
            "id": event.user_id,
            "tenant": event.tenant,
            "erased": True,
            "username_digest": secret_digest(str(doc.get("username", "")).strip().lower()),
        }
    return doc


def apply_client(doc: Doc | None, event: Event) -> Doc | None:
    """The client document after `event`."""
    if isinstance(event, ClientRegistered) and doc is None:
        return {
            "client_id": event.client_id,
            "tenant": event.tenant,
            "client_type": "confidential" if event.confidential else "public",
            "name": event.name or event.client_id,
            "redirect_uris": list(event.redirect_uris),
            "post_logout_redirect_uris": list(event.post_logout_redirect_uris),
            "scopes": list(event.scopes),
            "grant_types": list(event.grant_types),
            # Events written before audiences were recorded meant "every platform API".
            "audiences": list(event.audiences or AUDIENCES),
            "roles": list(event.roles),
        }
    return doc
