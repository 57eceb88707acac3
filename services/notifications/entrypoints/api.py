"""The notifications API: send, templates, routes, settings, preferences, inbox (+SSE), status.

No `from __future__ import annotations` here: the per-app `Annotated` dependency aliases
are local names FastAPI must resolve when each route is declared.

Routes parse, check the tenant wall, call the service layer and map domain errors to 4xx.
"""

import json
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from mutualis_kernel.auth import Principal, TokenVerifier, authenticated, require_tenant
from mutualis_kernel.http import ApiError
from notifications.adapters.callbacks import check_callback_url
from notifications.adapters.stores import InboxItem, Stores, TenantConfig
from notifications.domain.commands import SendNotification
from notifications.domain.errors import NotificationError
from notifications.domain.model import Preferences
from notifications.domain.routing import parse_routes
from notifications.domain.templates import Template, validate_template
from notifications.service_layer import handlers
from notifications.service_layer.handlers import Deps

ADMIN_ROLES = ("tenant-admin",)


class Accepted(BaseModel):
    id: str
    status: str
    reason: str = ""


class InboxPage(BaseModel):
    items: list[InboxItem]
    unread: int


def _refuse(error: NotificationError) -> ApiError:
    return ApiError(422, error.code, error.reason)


def api_router(deps: Deps, verifier: TokenVerifier) -> APIRouter:
    router = APIRouter(prefix="/v1")
    stores: Stores = deps.stores
    Service = Annotated[Principal, Depends(authenticated(verifier, kinds=("service",)))]
    Admin = Annotated[Principal, Depends(authenticated(verifier, roles=ADMIN_ROLES))]
    Anyone = Annotated[Principal, Depends(authenticated(verifier))]

    @router.post("/tenants/{tenant}/notifications", status_code=202)
    async def send(tenant: str, command: SendNotification, principal: Service) -> Accepted:
        require_tenant(principal, tenant)
        if (command.user_id is None) == (command.address is None):
            raise ApiError(422, "recipient_required", "give exactly one of user_id or address")
        contact = await stores.contact(tenant, command.user_id) if command.user_id else None
        if command.user_id and contact is None:
            raise ApiError(404, "unknown_user", "no such user in this tenant")
        if command.channel == "inapp" and command.user_id is None:
            raise ApiError(422, "user_required", "in-app notifications go to a user")
        try:
            notification = await handlers.request(
                deps,
                tenant=tenant,
                kind=command.kind,
                category=command.category,
                channel=command.channel,
                user_id=command.user_id,
                contact=contact,
                address=command.address,
                variables=command.variables,
                critical=command.critical,
                cause_id=f"api:{principal.client_id or principal.subject}:{command.reference}",
                strict=True,
            )
        except NotificationError as error:
            raise _refuse(error) from None
        return Accepted(id=notification.id, status=notification.status, reason=notification.reason)

    @router.get("/tenants/{tenant}/notifications/{notification_id}")
    async def status(tenant: str, notification_id: str, principal: Anyone) -> dict[str, Any]:
        require_tenant(principal, tenant)
        if principal.kind == "citizen":
            raise ApiError(403, "forbidden", "message status is for agents and services")
        loaded = await stores.load_notification(tenant, notification_id)
        if loaded is None:
            raise ApiError(404, "not_found", "no such notification")
        n = loaded[0]
        return {
            "id": n.id,
            "status": n.status,
            "reason": n.reason,
            "channel": n.channel,
            "kind": n.kind,
            "attempts": n.attempt_count,
            "provider": n.provider,
            "message_id": n.message_id,
        }

    @router.get("/tenants/{tenant}/statistics")
    async def statistics(tenant: str, principal: Admin) -> dict[str, int]:
        require_tenant(principal, tenant)
        return await stores.statistics(tenant)

    # -- templates, routes, settings (tenant administrators) -------------------------------
    @router.put("/tenants/{tenant}/templates/{kind}")
    async def put_template(
        tenant: str, kind: str, template: Template, principal: Admin
    ) -> Template:
        require_tenant(principal, tenant)
        if template.kind != kind:
            raise ApiError(422, "kind_mismatch", "the template's kind must match the URL")
        try:
            validate_template(template)
        except NotificationError as error:
            raise _refuse(error) from None
        await stores.save_template(tenant, template)
        return template

    @router.get("/tenants/{tenant}/templates/{kind}")
    async def get_template(tenant: str, kind: str, principal: Admin) -> Template:
        require_tenant(principal, tenant)
        template = await stores.template(tenant, kind)
        if template is None:
            raise ApiError(404, "not_found", "no template of this kind for this tenant")
        return template

    @router.get("/tenants/{tenant}/templates")
    async def list_templates(tenant: str, principal: Admin) -> list[Template]:
        require_tenant(principal, tenant)
        return await stores.tenant_templates(tenant)

    @router.delete("/tenants/{tenant}/templates/{kind}", status_code=204)
    async def delete_template(tenant: str, kind: str, principal: Admin) -> None:
        require_tenant(principal, tenant)
        await stores.delete_template(tenant, kind)

    @router.put("/tenants/{tenant}/routes")
    async def put_routes(
        tenant: str, principal: Admin, text: Annotated[str, Body(media_type="application/yaml")]
    ) -> dict[str, int]:
        require_tenant(principal, tenant)
        try:
            rules = parse_routes(text)
        except NotificationError as error:
            raise _refuse(error) from None
        await stores.save_routes(tenant, text)
        return {"version": rules.version, "rules": len(rules.rules)}

    @router.put("/tenants/{tenant}/settings")
    async def put_settings(tenant: str, config: TenantConfig, principal: Admin) -> TenantConfig:
        require_tenant(principal, tenant)
        try:
            if config.callback_url:
                check_callback_url(config.callback_url, dev_mode=deps.dev_mode)
            config = config.checked()
        except NotificationError as error:
            raise _refuse(error) from None
        await stores.save_tenant_config(tenant, config)
        deps.buckets.pop(tenant, None)
        return config

    # -- the caller's own preferences and inbox --------------------------------------------
    @router.get("/me/preferences")
    async def my_preferences(principal: Anyone) -> Preferences:
        return await stores.preferences_of(principal.tenant, principal.subject)

    @router.put("/me/preferences")
    async def set_my_preferences(prefs: Preferences, principal: Anyone) -> Preferences:
        await stores.save_preferences(principal.tenant, principal.subject, prefs)
        return prefs

    @router.get("/me/inbox")
    async def inbox(principal: Anyone) -> InboxPage:
        items = await stores.inbox_items(principal.tenant, principal.subject)
        return InboxPage(items=items, unread=sum(1 for i in items if not i.read))

    @router.get("/me/inbox/unread")
    async def unread(principal: Anyone) -> dict[str, int]:
        items = await stores.inbox_items(principal.tenant, principal.subject)
        return {"unread": sum(1 for i in items if not i.read)}

    @router.post("/me/inbox/{item_id}/read", status_code=204)
    async def mark_read(item_id: str, principal: Anyone) -> None:
        if not await stores.mark_read(principal.tenant, principal.subject, item_id):
            raise ApiError(404, "not_found", "no such inbox item")

    @router.get("/me/inbox/stream")
    async def stream(principal: Anyone) -> StreamingResponse:
        prefix = Stores.inbox_prefix(principal.tenant, principal.subject)
        return StreamingResponse(_inbox_events(stores, prefix), media_type="text/event-stream")

    return router


async def _inbox_events(stores: Stores, prefix: str) -> AsyncIterator[bytes]:
    """Server-Sent Events: one `inbox` event per new or changed item, keep-alives between."""
    watcher = await stores.inbox.watch(f"{prefix}.*", ignore_deletes=True)
    try:
        yield b": connected\n\n"
        while True:
            try:
                entry = await watcher.updates(timeout=15.0)  # type: ignore[no-untyped-call]
            except TimeoutError:  # nats-py's TimeoutError derives from it
                yield b": keep-alive\n\n"
                continue
            if entry is None or not entry.value:
                continue
            item = json.loads(entry.value)
            yield f"event: inbox\ndata: {json.dumps(item)}\n\n".encode()
    finally:
        await watcher.stop()  # type: ignore[no-untyped-call]
