"""Orders given to notifications (from the API); events come from the other services."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from notifications.domain.model import Channel


class SendNotification(BaseModel):
    """Send the tenant's template `kind` to a user (by id) or to a bare address."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    channel: Channel = "email"
    user_id: str | None = Field(default=None, max_length=128)
    address: str | None = Field(default=None, max_length=254)
    variables: dict[str, Any] = Field(default_factory=dict)
    category: str = Field(default="general", pattern=r"^[a-z0-9_-]{1,32}$")
    critical: bool = False
    #: The caller's idempotency key: the same key twice sends once.
    reference: str = Field(min_length=1, max_length=128)
