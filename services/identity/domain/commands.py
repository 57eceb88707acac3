"""Orders given to the identity service (validated at the edge, executed by the handlers)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from identity.domain.model import AUDIENCES, STANDARD_SCOPES


class CreateUser(BaseModel):
    username: str = Field(min_length=1, max_length=254)
    kind: Literal["citizen", "agent"]
    tenant: str
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=254)
    password: str = Field(min_length=12, max_length=1024)
    roles: list[str] = Field(default_factory=list)
    totp_secret: str | None = None


class DisableUser(BaseModel):
    user_id: str
    tenant: str
    disabled: bool = True


class GrantRole(BaseModel):
    user_id: str
    tenant: str
    role: str


class RevokeRole(BaseModel):
    user_id: str
    tenant: str
    role: str


class RegisterClient(BaseModel):
    client_id: str = Field(pattern=r"^[A-Za-z0-9_-]{3,64}$")
    tenant: str
    name: str = Field(min_length=1, max_length=200)
    client_type: Literal["confidential", "public"]
    redirect_uris: list[str] = Field(default_factory=list)
    post_logout_redirect_uris: list[str] = Field(default_factory=list)
    scopes: list[str] = Field(default_factory=lambda: list(STANDARD_SCOPES))
    grant_types: list[str] = Field(default_factory=lambda: ["authorization_code", "refresh_token"])
    audiences: list[str] = Field(default_factory=lambda: list(AUDIENCES))
    roles: list[str] = Field(default_factory=list)
    #: Only the dev seed sets it (documented demo secrets); otherwise one is generated.
    client_secret: str | None = None


class EraseUser(BaseModel):
    user_id: str
