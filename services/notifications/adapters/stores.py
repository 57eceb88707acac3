"""The notifications service's state in JetStream KV: ledger, directory, preferences, templates,
inboxes, tenant settings and anonymous statistics.

Keys are `<tenant>.<...>`: a tenant's data is one key prefix, so listing never crosses a wall.
User ids that are not safe KV tokens are hashed into one.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel, ConfigDict, Field

from mutualis_kernel.bus.kv import KvEntry, scan
from notifications import manifest
from notifications.domain.errors import InvalidAddress, InvalidSettings
from notifications.domain.model import (
    Channel,
    Notification,
    Preferences,
    normalise_email,
    normalise_phone,
)
from notifications.domain.routing import RoutingRules, parse_routes
from notifications.domain.templates import Template

T = TypeVar("T")

_TOKEN = re.compile(r"^[A-Za-z0-9_=-]{1,64}$")


def token(value: str) -> str:
    """A KV key token for an id: itself when safe, else a stable hash."""
    if _TOKEN.match(value):
        return value
    return "h-" + hashlib.sha256(value.encode()).hexdigest()[:40]


class Conflict(Exception):
    """Someone else changed the entry since it was read (compare-and-set refused)."""


class Contact(BaseModel):
    """What notifications knows about a user: enough to reach them, nothing more."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    tenant: str
    kind: str = "citizen"
    email: str | None = None
    phone: str | None = None
    name: str | None = None
    roles: tuple[str, ...] = ()
    disabled: bool = False
    locale: str = "fr"


class InboxItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    kind: str
    category: str
    title: str
    body: str
    created_at: datetime
    read: bool = False


class TenantConfig(BaseModel):
    """Per-tenant delivery settings.

    Sandbox mode sends every email to `sandbox_mailbox` and every SMS to `sandbox_phone`,
    never to the real recipient. In-app messages are not redirected: they never leave the
    platform (no third party receives anything) and land in the inbox of the account the
    event named, which in a tenant under test is a test account; redirecting them would need
    a sandbox *account*, and would hide from testers the inbox they are testing.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    sandbox: bool = False
    sandbox_mailbox: str | None = Field(default=None, max_length=254)
    sandbox_phone: str | None = Field(default=None, max_length=32)
    callback_url: str | None = None
    callback_secret: str | None = Field(default=None, min_length=16, max_length=256)
    rate_per_s: float | None = Field(default=None, gt=0)
    rate_burst: float | None = Field(default=None, ge=1)
    logo_url: str | None = None
    color: str | None = Field(default=None, pattern=r"^#[0-9a-fA-F]{6}$")
    signature: str | None = Field(default=None, max_length=500)

    def sandbox_address(self, channel: Channel) -> str | None:
        """Where sandbox mode sends `channel`'s messages (None: nowhere, refuse them)."""
        if channel == "email":
            return self.sandbox_mailbox
        if channel == "sms":
            return self.sandbox_phone
        return None

    def checked(self) -> TenantConfig:
        """These settings with test addresses normalised, or `InvalidSettings` with the reason.

        Not a validator of the model: settings saved before this check (a sandbox without
        its test addresses) must still load, and are refused message by message instead.
        """
        changes: dict[str, str] = {}
        if self.sandbox and not (self.sandbox_mailbox and self.sandbox_phone):
            raise InvalidSettings(
                "sandbox mode needs both test addresses, sandbox_mailbox and sandbox_phone: "
                "without them messages would have nowhere safe to go"
            )
        try:
            if self.sandbox_mailbox:
                changes["sandbox_mailbox"] = normalise_email(self.sandbox_mailbox)
            if self.sandbox_phone:
                changes["sandbox_phone"] = normalise_phone(self.sandbox_phone)
        except InvalidAddress as error:
            raise InvalidSettings(f"sandbox: {error.reason}") from None
        return self.model_copy(update=changes)


def _entries(kv: KeyValue, pattern: str) -> AsyncIterator[KvEntry]:
    """Current entries under a key pattern (server-side filtered), deletes skipped."""
    return scan(kv, pattern)


class Stores:
    """Typed access to the buckets.

    Tenant settings, templates and routing rules are read for every message but change
    rarely: they are kept in memory for `settings_ttl_s` (saving through this instance
    forgets its copy at once; another instance's change shows within the TTL).
    """

    def __init__(self, buckets: dict[str, KeyValue], *, settings_ttl_s: float = 2.0) -> None:
        self.settings_ttl_s = settings_ttl_s
        self._cached: dict[str, tuple[float, object]] = {}
        # Last known (count, revision) per statistics key: the next increment is tried
        # directly against it, and re-read only when another writer got there first.
        self._counts: dict[str, tuple[int, int]] = {}
        self.ledger = buckets[manifest.LEDGER]
        self.directory = buckets[manifest.DIRECTORY]
        self.preferences = buckets[manifest.PREFERENCES]
        self.templates = buckets[manifest.TEMPLATES]
        self.inbox = buckets[manifest.INBOX]
        self.tenants = buckets[manifest.TENANT_CONFIG]
        self.stats = buckets[manifest.STATS]

    @classmethod
    async def open(cls, js: JetStreamContext, *, settings_ttl_s: float = 2.0) -> Stores:
        names = [kv.bucket for kv in manifest.RESOURCES.key_values]
        return cls(
            {name: await js.key_value(name) for name in names}, settings_ttl_s=settings_ttl_s
        )

    async def _remembered(self, key: str, load: Callable[[], Awaitable[T]]) -> T:
        now = time.monotonic()
        hit = self._cached.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]  # type: ignore[return-value]  # stored by this method under `key`
        value = await load()
        if self.settings_ttl_s > 0:
            self._cached[key] = (now + self.settings_ttl_s, value)
        return value

    def _forget(self, key: str) -> None:
        self._cached.pop(key, None)

    # -- ledger ---------------------------------------------------------------------------
    @staticmethod
    def ledger_key(tenant: str, notification_id: str) -> str:
        # Ids we mint are safe tokens and stay as they are; an id from a URL with characters
        # a KV key refuses is hashed, so it is simply not found (not a 500).
        return f"{tenant}.{token(notification_id)}"

    async def create_notification(self, notification: Notification) -> bool:
        """Record a new notification; False when its idempotency key was already recorded."""
        key = self.ledger_key(notification.tenant, notification.id)
        try:
            await self.ledger.create(key, notification.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def load_notification(
        self, tenant: str, notification_id: str
    ) -> tuple[Notification, int] | None:
        try:
            entry = await self.ledger.get(self.ledger_key(tenant, notification_id))
        except KeyNotFoundError:
            return None
        if not entry.value:
            return None
        assert entry.revision is not None
        return Notification.model_validate_json(entry.value), entry.revision

    async def save_notification(self, notification: Notification, revision: int) -> int:
        """Compare-and-set: only the holder of `revision` moves the status on."""
        key = self.ledger_key(notification.tenant, notification.id)
        try:
            return await self.ledger.update(key, notification.model_dump_json().encode(), revision)
        except KeyWrongLastSequenceError:
            raise Conflict(key) from None

    async def notifications(self, tenant: str) -> AsyncIterator[tuple[Notification, int]]:
        async for entry in _entries(self.ledger, f"{tenant}.*"):
            assert entry.revision is not None
            assert entry.value is not None
            yield Notification.model_validate_json(entry.value), entry.revision

    async def count(self, tenant: str, channel: Channel, status: str) -> None:
        """Anonymous statistics: a counter per tenant, channel and final status."""
        key = f"{tenant}.{channel}.{status}"
        known = self._counts.get(key)
        for _ in range(20):
            try:
                if known is None:
                    try:
                        entry = await self.stats.get(key)
                    except KeyNotFoundError:
                        revision = await self.stats.create(key, b"1")
                        self._counts[key] = (1, revision)
                        return
                    assert entry.revision is not None
                    known = (int(entry.value or b"0"), entry.revision)
                current, revision = known
                revision = await self.stats.update(key, str(current + 1).encode(), revision)
                self._counts[key] = (current + 1, revision)
                return
            except KeyWrongLastSequenceError:
                known = None  # another writer (or instance) counted too: read again

    async def statistics(self, tenant: str) -> dict[str, int]:
        return {
            entry.key.removeprefix(f"{tenant}."): int(entry.value or b"0")
            async for entry in _entries(self.stats, f"{tenant}.*.*")
        }

    # -- directory ------------------------------------------------------------------------
    async def contact(self, tenant: str, user_id: str) -> Contact | None:
        try:
            entry = await self.directory.get(f"{tenant}.{token(user_id)}")
        except KeyNotFoundError:
            return None
        return Contact.model_validate_json(entry.value) if entry.value else None

    async def put_contact(self, contact: Contact) -> None:
        key = f"{contact.tenant}.{token(contact.user_id)}"
        await self.directory.put(key, contact.model_dump_json().encode())

    async def contacts_with_roles(self, tenant: str, roles: tuple[str, ...]) -> list[Contact]:
        found = []
        async for entry in _entries(self.directory, f"{tenant}.*"):
            assert entry.value is not None
            contact = Contact.model_validate_json(entry.value)
            if not contact.disabled and set(contact.roles) & set(roles):
                found.append(contact)
        return found

    async def forget_contact(self, tenant: str, user_id: str) -> None:
        await self.directory.purge(f"{tenant}.{token(user_id)}")

    # -- preferences ----------------------------------------------------------------------
    async def preferences_of(self, tenant: str, user_id: str) -> Preferences:
        try:
            entry = await self.preferences.get(f"{tenant}.{token(user_id)}")
        except KeyNotFoundError:
            return Preferences()
        return Preferences.model_validate_json(entry.value) if entry.value else Preferences()

    async def save_preferences(self, tenant: str, user_id: str, prefs: Preferences) -> None:
        await self.preferences.put(f"{tenant}.{token(user_id)}", prefs.model_dump_json().encode())

    async def forget_preferences(self, tenant: str, user_id: str) -> None:
        await self.preferences.purge(f"{tenant}.{token(user_id)}")

    # -- templates and routes -------------------------------------------------------------
    async def template(self, tenant: str, kind: str) -> Template | None:
        return await self._remembered(
            f"template/{tenant}/{kind}", lambda: self._template(tenant, kind)
        )

    async def _template(self, tenant: str, kind: str) -> Template | None:
        try:
            entry = await self.templates.get(f"{tenant}.template.{token(kind)}")
        except KeyNotFoundError:
            return None
        return Template.model_validate_json(entry.value) if entry.value else None

    async def save_template(self, tenant: str, template: Template) -> int:
        revision = await self.templates.put(
            f"{tenant}.template.{token(template.kind)}", template.model_dump_json().encode()
        )
        # After the write: a read in between would otherwise keep the old copy.
        self._forget(f"template/{tenant}/{template.kind}")
        return revision

    async def delete_template(self, tenant: str, kind: str) -> None:
        await self.templates.delete(f"{tenant}.template.{token(kind)}")
        self._forget(f"template/{tenant}/{kind}")

    async def tenant_templates(self, tenant: str) -> list[Template]:
        return [
            Template.model_validate_json(entry.value or b"{}")
            async for entry in _entries(self.templates, f"{tenant}.template.*")
        ]

    async def routes(self, tenant: str) -> RoutingRules | None:
        return await self._remembered(f"routes/{tenant}", lambda: self._routes(tenant))

    async def _routes(self, tenant: str) -> RoutingRules | None:
        try:
            entry = await self.templates.get(f"{tenant}.routes")
        except KeyNotFoundError:
            return None
        return parse_routes(entry.value.decode()) if entry.value else None

    async def save_routes(self, tenant: str, text: str) -> None:
        await self.templates.put(f"{tenant}.routes", text.encode())
        self._forget(f"routes/{tenant}")

    # -- inbox ----------------------------------------------------------------------------
    @staticmethod
    def inbox_prefix(tenant: str, user_id: str) -> str:
        return f"{tenant}.{token(user_id)}"

    async def put_inbox_item(self, tenant: str, user_id: str, item: InboxItem) -> None:
        key = f"{self.inbox_prefix(tenant, user_id)}.{item.id}"
        await self.inbox.put(key, item.model_dump_json().encode())

    async def add_inbox_item(self, tenant: str, user_id: str, item: InboxItem) -> bool:
        """Add a delivered item; False (and nothing changed) when it is there already."""
        key = f"{self.inbox_prefix(tenant, user_id)}.{item.id}"
        try:
            await self.inbox.create(key, item.model_dump_json().encode())
        except KeyWrongLastSequenceError:
            return False
        return True

    async def inbox_items(self, tenant: str, user_id: str) -> list[InboxItem]:
        items = [
            InboxItem.model_validate_json(entry.value or b"{}")
            async for entry in _entries(self.inbox, f"{self.inbox_prefix(tenant, user_id)}.*")
        ]
        return sorted(items, key=lambda i: i.created_at, reverse=True)

    async def mark_read(self, tenant: str, user_id: str, item_id: str) -> bool:
        key = f"{self.inbox_prefix(tenant, user_id)}.{token(item_id)}"
        try:
            entry = await self.inbox.get(key)
        except KeyNotFoundError:
            return False
        if not entry.value:
            return False
        item = InboxItem.model_validate_json(entry.value)
        await self.inbox.put(key, item.model_copy(update={"read": True}).model_dump_json().encode())
        return True

    async def purge_inbox(self, tenant: str, user_id: str) -> int:
        purged = 0
        async for entry in _entries(self.inbox, f"{self.inbox_prefix(tenant, user_id)}.*"):
            await self.inbox.purge(entry.key)
            purged += 1
        return purged

    # -- tenant settings ------------------------------------------------------------------
    async def tenant_config(self, tenant: str) -> TenantConfig:
        return await self._remembered(f"config/{tenant}", lambda: self._tenant_config(tenant))

    async def _tenant_config(self, tenant: str) -> TenantConfig:
        try:
            entry = await self.tenants.get(tenant)
        except KeyNotFoundError:
            return TenantConfig()
        return TenantConfig.model_validate_json(entry.value) if entry.value else TenantConfig()

    async def save_tenant_config(self, tenant: str, config: TenantConfig) -> None:
        await self.tenants.put(tenant, config.model_dump_json().encode())
        self._forget(f"config/{tenant}")
