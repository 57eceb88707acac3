"""Demo accounts and clients for development (`MUTUALIS_DEV_MODE=true` only).

Every tenant gets four agents whose roles cover a parapheur circuit (`agent.<tenant>`,
`signataire.<tenant>` with TOTP, `archiviste.<tenant>`, `admin.<tenant>`), the metropolis gets
a platform administrator (`sre.metropole`), a few citizens live in communes, and there is a
public demo client plus a confidential client per platform service. Secrets are fixed and
public on purpose: `credentials()` lists them without touching NATS, for `mutualis dev
credentials`. Seeding again changes nothing.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

from identity.domain import commands
from identity.domain.errors import AlreadyExists
from identity.service_layer import handlers
from mutualis_kernel.tenants import TenantDirectory, default_tenants

DEMO_PASSWORD = "mutualis-demo-2025"  # noqa: S105 - a documented dev-only demo password
DEMO_CLIENT_ID = "mutualis-demo"
DEMO_REDIRECT_URI = "http://127.0.0.1:8765/callback"
DEMO_POST_LOGOUT_URI = "http://127.0.0.1:8765/"
SERVICES = ("parapheur", "archive", "notifications")

_AGENTS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("agent", "Agent", ("agent",)),
    ("signataire", "Signataire", ("agent", "signatory")),
    ("archiviste", "Archiviste", ("agent", "archivist")),
    ("admin", "Administrateur", ("agent", "tenant-admin")),
)
_CITIZENS = (
    ("camille.martin", "Camille Martin"),
    ("lucas.bernard", "Lucas Bernard"),
    ("ines.petit", "Inès Petit"),
)


def demo_totp_secret(tenant: str) -> str:
    """A fixed, documented TOTP secret per tenant's signatory (dev only)."""
    digest = hashlib.sha256(f"mutualis-dev-totp/{tenant}".encode()).digest()[:20]
    return base64.b32encode(digest).decode()


def service_client_secret(service: str) -> str:
    return f"dev-{service}-client-secret"


def credentials(tenants: TenantDirectory | None = None) -> list[dict[str, Any]]:
    """Every demo account and client with its secrets, as data (no I/O)."""
    directory = tenants or default_tenants()
    rows: list[dict[str, Any]] = []
    for tenant in directory.tenants:
        for prefix, title, roles in _AGENTS:
            rows.append(
                {
                    "type": "user",
                    "kind": "agent",
                    "username": f"{prefix}.{tenant.slug}",
                    "name": f"{title} {tenant.name}",
                    "tenant": tenant.slug,
                    "password": DEMO_PASSWORD,
                    "roles": list(roles),
                    "totp_secret": demo_totp_secret(tenant.slug) if "signatory" in roles else None,
                }
            )
    metropolis = directory.metropolis.slug
    rows.append(
        {
            "type": "user",
            "kind": "agent",
            "username": f"sre.{metropolis}",
            "name": "Équipe plateforme",
            "tenant": metropolis,
            "password": DEMO_PASSWORD,
            "roles": ["agent", "platform-admin"],
            "totp_secret": None,
        }
    )
    communes = [t for t in directory.tenants if t.kind == "commune"]
    for (username, name), commune in zip(_CITIZENS, communes, strict=False):
        rows.append(
            {
                "type": "user",
                "kind": "citizen",
                "username": username,
                "name": name,
                "tenant": commune.slug,
                "password": DEMO_PASSWORD,
                "roles": [],
                "totp_secret": None,
            }
        )
    rows.append(
        {
            "type": "client",
            "client_id": DEMO_CLIENT_ID,
            "client_type": "public",
            "tenant": metropolis,
            "redirect_uris": [DEMO_REDIRECT_URI],
            "post_logout_redirect_uris": [DEMO_POST_LOGOUT_URI],
            "client_secret": None,
            "grant_types": ["authorization_code", "refresh_token"],
        }
    )
    for service in SERVICES:
        rows.append(
            {
                "type": "client",
                "client_id": f"svc-{service}",
                "client_type": "confidential",
                "tenant": metropolis,
                "redirect_uris": [],
                "post_logout_redirect_uris": [],
                "client_secret": service_client_secret(service),
                "grant_types": ["client_credentials"],
            }
        )
    return rows


async def seed_dev(deps: handlers.Deps, *, only_tenants: tuple[str, ...] | None = None) -> int:
    """Create what is missing; returns how many accounts and clients were created."""
    created = 0
    for row in credentials(deps.tenants):
        if only_tenants is not None and row["type"] == "user" and row["tenant"] not in only_tenants:
            continue
        try:
            if row["type"] == "user":
                if await deps.stores.users.by_username(row["username"]) is not None:
                    continue
                await handlers.create_user(
                    commands.CreateUser(
                        username=row["username"],
                        kind=row["kind"],
                        tenant=row["tenant"],
                        name=row["name"],
                        email=f"{row['username']}@example.org",
                        password=row["password"],
                        roles=row["roles"],
                        totp_secret=row["totp_secret"],
                    ),
                    deps,
                )
            else:
                if await deps.stores.clients.find(row["client_id"]) is not None:
                    continue
                scopes = ["openid", "profile", "email", "offline_access"]
                if row["client_type"] == "confidential":
                    scopes = ["profile"]
                await handlers.register_client(
                    commands.RegisterClient(
                        client_id=row["client_id"],
                        tenant=row["tenant"],
                        name=row["client_id"],
                        client_type=row["client_type"],
                        redirect_uris=row["redirect_uris"],
                        post_logout_redirect_uris=row["post_logout_redirect_uris"],
                        grant_types=row["grant_types"],
                        scopes=scopes,
                        client_secret=row["client_secret"],
                    ),
                    deps,
                )
            created += 1
        except AlreadyExists:
            continue  # another instance seeded it at the same moment
    return created
