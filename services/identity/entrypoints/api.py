"""Admin API (tenant admins in their tenant, platform admins everywhere) and self-service.

Tokens are verified here against identity's own keys (not through `mutualis_kernel.auth`, so
identity does not call itself over HTTP). An admin of one tenant gets 403 on another's.
"""

from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from identity.adapters.repository import StaleWrite
from identity.domain import commands
from identity.domain.errors import AlreadyExists, InvalidCommand, NotFound, OAuthError
from identity.domain.model import ADMIN_ROLES
from identity.service_layer import handlers
from identity.service_layer.provider import Provider
from mutualis_kernel.http import ApiError, readable_errors

log = structlog.get_logger("identity.api")


@dataclass(frozen=True)
class Caller:
    subject: str
    tenant: str
    kind: str
    roles: frozenset[str]

    def may_administer(self, tenant: str) -> bool:
        if "platform-admin" in self.roles:
            return True
        return "tenant-admin" in self.roles and self.tenant == tenant


def _refusal(status: int, error: str, description: str) -> HTTPException:
    return HTTPException(
        status,
        description,
        headers={"WWW-Authenticate": f'Bearer error="{error}", error_description="{description}"'},
    )


def api_router(provider: Provider) -> APIRouter:
    router = APIRouter(tags=["accounts"])
    deps = provider.deps

    async def caller(request: Request) -> Caller:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _refusal(401, "invalid_request", "a Bearer access token is required")
        try:
            claims = await provider.verify_access_token(token.strip(), "mutualis:identity")
        except OAuthError as error:
            raise _refusal(401, error.error, error.description) from None
        return Caller(
            subject=str(claims["sub"]),
            tenant=str(claims.get("tenant")),
            kind=str(claims.get("kind")),
            roles=frozenset(claims.get("roles") or []),
        )

    CallerDep = Annotated[Caller, Depends(caller)]

    def invalid_body(error: ValidationError) -> ApiError:
        # The kernel's 422 shape, and never the rejected input: it may hold a password.
        return ApiError(422, "invalid_request", readable_errors(error.errors()))

    def admin_of(who: Caller, tenant: str) -> None:
        if who.kind != "agent" or not who.roles.intersection(ADMIN_ROLES):
            raise _refusal(403, "insufficient_scope", "an administrator role is required")
        if not who.may_administer(tenant):
            raise _refusal(403, "insufficient_scope", "this tenant is not yours to administer")

    async def run(command: Any, who: Caller) -> Any:
        try:
            return await handlers.HANDLERS[type(command)](command, deps, who.subject)
        except NotFound as error:
            raise HTTPException(404, str(error)) from None
        except AlreadyExists:
            raise HTTPException(409, "already exists") from None
        except StaleWrite:
            raise HTTPException(409, "changed concurrently; retry") from None
        except InvalidCommand as error:
            raise HTTPException(422, str(error)) from None

    @router.post("/admin/signing-keys/rotate")
    async def rotate_signing_key(who: CallerDep) -> dict[str, str]:
        """A new signing key now (a key suspected compromised, a test of the relying parties'
        JWKS handling); tokens already issued stay valid until they expire."""
        if who.kind != "agent" or "platform-admin" not in who.roles:
            raise _refusal(
                403, "insufficient_scope", "rotating the signing key needs the platform-admin role"
            )
        kid = await provider.keys.rotate()
        log.info("keys.rotated", kid=kid, reason="asked by a platform admin", by=who.subject)
        return {"kid": kid}

    @router.post("/admin/tenants/{tenant}/users", status_code=201)
    async def create_user(tenant: str, body: dict[str, Any], who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        try:
            command = commands.CreateUser.model_validate({**body, "tenant": tenant})
        except ValidationError as error:
            raise invalid_body(error) from None
        user = await run(command, who)
        return dict(user.export())

    @router.post("/admin/tenants/{tenant}/users/{user_id}/disable")
    async def disable_user(tenant: str, user_id: str, who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        user = await run(commands.DisableUser(user_id=user_id, tenant=tenant), who)
        return dict(user.export())

    @router.post("/admin/tenants/{tenant}/users/{user_id}/enable")
    async def enable_user(tenant: str, user_id: str, who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        command = commands.DisableUser(user_id=user_id, tenant=tenant, disabled=False)
        return dict((await run(command, who)).export())

    @router.put("/admin/tenants/{tenant}/users/{user_id}/roles/{role}")
    async def grant_role(tenant: str, user_id: str, role: str, who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        if role == "platform-admin" and "platform-admin" not in who.roles:
            raise _refusal(403, "insufficient_scope", "only a platform admin grants that role")
        user = await run(commands.GrantRole(user_id=user_id, tenant=tenant, role=role), who)
        return dict(user.export())

    @router.delete("/admin/tenants/{tenant}/users/{user_id}/roles/{role}")
    async def revoke_role(tenant: str, user_id: str, role: str, who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        user = await run(commands.RevokeRole(user_id=user_id, tenant=tenant, role=role), who)
        return dict(user.export())

    @router.post("/admin/tenants/{tenant}/clients", status_code=201)
    async def register_client(tenant: str, body: dict[str, Any], who: CallerDep) -> dict[str, Any]:
        admin_of(who, tenant)
        try:
            command = commands.RegisterClient.model_validate(
                {**body, "tenant": tenant, "client_secret": None}
            )
        except ValidationError as error:
            raise invalid_body(error) from None
        client, secret = await run(command, who)
        answer: dict[str, Any] = {
            "client_id": client.client_id,
            "tenant": client.tenant,
            "client_type": client.client_type,
            "redirect_uris": client.redirect_uris,
            "scopes": client.scopes,
            "grant_types": client.grant_types,
        }
        if secret is not None:
            answer["client_secret"] = secret  # shown once, only its digest is kept
        return answer

    @router.get("/me")
    async def me(who: CallerDep) -> dict[str, Any]:
        user = await provider.stores.users.find(who.subject)
        if user is None:
            raise HTTPException(404, "no account")
        return dict(user.export())

    @router.get("/me/export")
    async def export(who: CallerDep) -> JSONResponse:
        user = await provider.stores.users.find(who.subject)
        if user is None:
            raise HTTPException(404, "no account")
        return JSONResponse(
            {"format": "mutualis-identity-export/1", "account": user.export()},
            headers={"Content-Disposition": 'attachment; filename="mon-compte-mutualis.json"'},
        )

    @router.delete("/me", status_code=204)
    async def erase(who: CallerDep) -> None:
        if who.kind != "citizen":
            raise _refusal(403, "insufficient_scope", "agent accounts are closed by an admin")
        await run(commands.EraseUser(user_id=who.subject), who)

    return router
