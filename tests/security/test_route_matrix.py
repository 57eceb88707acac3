"""Every HTTP route of every service declares who may call it, and the walls hold.

The routes are enumerated from each FastAPI app (`app.routes`), not listed by hand: a route
that appears without an entry in `PUBLIC` or `PROTECTED` below fails the test, so every new
route needs a decision. Each protected route is then called by:

- nobody (no token): must get 401;
- an agent of another tenant (`merignac`) holding every role but platform-admin, at the
  substantial level: must get 401/403/404 (422 only where the body is checked before the
  tenant, which reveals nothing), and never see the victim's data;
- a citizen, an agent with only the `agent` role, and a service client, all of the victim
  tenant: refused with 401/403/404 unless the route's decision lets them in.

Nothing may ever answer 5xx. One object is seeded per service in `bordeaux` first, and the
path parameters point at it, so an open wall would show its id or title in the body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from starlette.routing import Route

from mutualis_kernel.auth import LOA_SUBSTANTIAL
from mutualis_kernel.runtime import LocalCluster

from .conftest import ATTACKER, SERVICES, VICTIM, UnderTest, under_test

ANY_KIND = frozenset({"citizen", "agent", "service"})
AGENTS = frozenset({"agent"})
AGENTS_AND_SERVICES = frozenset({"agent", "service"})


@dataclass(frozen=True)
class Who:
    """Who a route lets in: token kinds, and any one of `roles` (none: no role needed).

    `own_data`: the route acts in the caller's own scope, taken from its token (`/me...`, or a
    parapheur list of the token's tenant), so a caller of another tenant may get 2xx — about
    itself, never about the victim.
    `streams`: a long-lived stream, only called by the callers it must refuse.
    """

    kinds: frozenset[str]
    roles: frozenset[str] = frozenset()
    own_data: bool = False
    streams: bool = False

    def admits(self, kind: str, roles: tuple[str, ...]) -> bool:
        return kind in self.kinds and (not self.roles or bool(self.roles.intersection(roles)))


def who(kinds: frozenset[str], *roles: str, own_data: bool = False, streams: bool = False) -> Who:
    return Who(kinds, frozenset(roles), own_data, streams)


KERNEL_PUBLIC = {
    "GET /healthz": "liveness probe, says nothing but 'alive'",
    "GET /readyz": "readiness probe for the orchestrator (dependency names, no data)",
    "GET /metrics": "Prometheus scrape (aggregates, no tenant data); network-restricted",
    "GET /openapi.json": "the API description is public",
    "HEAD /openapi.json": "the API description is public",
    "GET /docs": "Swagger UI page (static)",
    "HEAD /docs": "Swagger UI page (static)",
    "GET /docs/oauth2-redirect": "Swagger UI helper page (static)",
    "HEAD /docs/oauth2-redirect": "Swagger UI helper page (static)",
    "GET /redoc": "ReDoc page (static)",
    "HEAD /redoc": "ReDoc page (static)",
}

PUBLIC: dict[str, dict[str, str]] = {
    "identity": {
        **KERNEL_PUBLIC,
        "GET /.well-known/openid-configuration": "OIDC discovery must be public",
        "GET /jwks": "public keys, for every verifier",
        "GET /authorize": "start of the OIDC code flow (anonymous by design)",
        "POST /authorize": "start of the OIDC code flow (anonymous by design)",
        "POST /login": "password form; throttled per account and per address",
        "POST /login/otp": "second-factor form, bound to a pending login",
        "POST /token": "token endpoint; client-authenticated per grant (RFC 6749)",
        "POST /introspect": "client-authenticated (RFC 7662); refused without client credentials",
        "POST /revoke": "client-authenticated (RFC 7009); refused without client credentials",
        "GET /logout": "RP-initiated logout (ends the caller's own session only)",
        "POST /logout": "RP-initiated logout (ends the caller's own session only)",
    },
    "parapheur": dict(KERNEL_PUBLIC),
    "archive": dict(KERNEL_PUBLIC),
    "notifications": dict(KERNEL_PUBLIC),
}

IDENTITY_ADMINS = who(AGENTS, "tenant-admin", "platform-admin")
ARCHIVE_READERS = who(ANY_KIND, "agent", "archivist")
ARCHIVISTS = who(ANY_KIND, "archivist")
PARAPHEUR_READERS = who(AGENTS_AND_SERVICES)
PARAPHEUR_MEMBERS = who(AGENTS, "agent")
PARAPHEUR_ADMINS = who(AGENTS, "tenant-admin")
NOTIFICATION_ADMINS = who(ANY_KIND, "tenant-admin")

PROTECTED: dict[str, dict[str, Who]] = {
    "identity": {
        "POST /admin/signing-keys/rotate": who(AGENTS, "platform-admin"),
        "POST /admin/tenants/{tenant}/users": IDENTITY_ADMINS,
        "POST /admin/tenants/{tenant}/users/{user_id}/disable": IDENTITY_ADMINS,
        "POST /admin/tenants/{tenant}/users/{user_id}/enable": IDENTITY_ADMINS,
        "PUT /admin/tenants/{tenant}/users/{user_id}/roles/{role}": IDENTITY_ADMINS,
        "DELETE /admin/tenants/{tenant}/users/{user_id}/roles/{role}": IDENTITY_ADMINS,
        "POST /admin/tenants/{tenant}/clients": IDENTITY_ADMINS,
        "GET /me": who(ANY_KIND, own_data=True),
        "GET /me/export": who(ANY_KIND, own_data=True),
        "DELETE /me": who(frozenset({"citizen"}), own_data=True),
        "GET /userinfo": who(ANY_KIND, own_data=True),
        "POST /userinfo": who(ANY_KIND, own_data=True),
    },
    "parapheur": {
        "GET /v1/circuits": who(AGENTS_AND_SERVICES, own_data=True),
        "GET /v1/circuits/{circuit_id}": PARAPHEUR_READERS,
        "POST /v1/circuits": PARAPHEUR_ADMINS,
        "PUT /v1/circuits/{circuit_id}": PARAPHEUR_ADMINS,
        "DELETE /v1/circuits/{circuit_id}": PARAPHEUR_ADMINS,
        "POST /v1/folders": PARAPHEUR_READERS,
        "POST /v1/folders/{folder_id}/submit": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}": PARAPHEUR_READERS,
        "GET /v1/tasks": who(AGENTS, "agent", own_data=True),
        "POST /v1/folders/{folder_id}/steps/{step}/{action}": PARAPHEUR_MEMBERS,
        "POST /v1/folders/{folder_id}/take-back": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}/document": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}/attachments/{index}": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}/history": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}/proof": PARAPHEUR_READERS,
        "GET /v1/folders/{folder_id}/proof.html": PARAPHEUR_READERS,
        "POST /v1/delegations": PARAPHEUR_MEMBERS,
        "GET /v1/delegations": who(AGENTS, "agent", own_data=True),
        "DELETE /v1/delegations/{delegation_id}": PARAPHEUR_MEMBERS,
    },
    "archive": {
        "POST /v1/archive/{tenant}/records": who(AGENTS_AND_SERVICES, "agent", "archivist"),
        "GET /v1/archive/{tenant}/records": ARCHIVE_READERS,
        "GET /v1/archive/{tenant}/records/{record_id}": ARCHIVE_READERS,
        "GET /v1/archive/{tenant}/records/{record_id}/content": ARCHIVE_READERS,
        "POST /v1/archive/{tenant}/records/{record_id}/holds": ARCHIVISTS,
        "DELETE /v1/archive/{tenant}/records/{record_id}/holds/{hold_id}": ARCHIVISTS,
        "GET /v1/archive/{tenant}/disposals/candidates": ARCHIVISTS,
        "POST /v1/archive/{tenant}/disposals": ARCHIVISTS,
        "POST /v1/archive/{tenant}/seals": ARCHIVISTS,
        "GET /v1/archive/{tenant}/seals": ARCHIVISTS,
        "POST /v1/archive/{tenant}/verify": ARCHIVISTS,
        "POST /v1/archive/{tenant}/exports": ARCHIVISTS,
        "POST /v1/archive/{tenant}/imports": ARCHIVISTS,
    },
    "notifications": {
        "POST /v1/tenants/{tenant}/notifications": who(frozenset({"service"})),
        "GET /v1/tenants/{tenant}/notifications/{notification_id}": who(AGENTS_AND_SERVICES),
        "GET /v1/tenants/{tenant}/statistics": NOTIFICATION_ADMINS,
        "PUT /v1/tenants/{tenant}/templates/{kind}": NOTIFICATION_ADMINS,
        "GET /v1/tenants/{tenant}/templates/{kind}": NOTIFICATION_ADMINS,
        "GET /v1/tenants/{tenant}/templates": NOTIFICATION_ADMINS,
        "DELETE /v1/tenants/{tenant}/templates/{kind}": NOTIFICATION_ADMINS,
        "PUT /v1/tenants/{tenant}/routes": NOTIFICATION_ADMINS,
        "PUT /v1/tenants/{tenant}/settings": NOTIFICATION_ADMINS,
        "GET /v1/me/preferences": who(ANY_KIND, own_data=True),
        "PUT /v1/me/preferences": who(ANY_KIND, own_data=True),
        "GET /v1/me/inbox": who(ANY_KIND, own_data=True),
        "GET /v1/me/inbox/unread": who(ANY_KIND, own_data=True),
        "POST /v1/me/inbox/{item_id}/read": who(ANY_KIND, own_data=True),
        "GET /v1/me/inbox/stream": who(ANY_KIND, own_data=True, streams=True),
    },
}


@dataclass(frozen=True)
class Attacker:
    name: str
    tenant: str
    kind: str
    roles: tuple[str, ...]


OTHER_TENANT = Attacker(
    "agent of another tenant, every role",
    ATTACKER,
    "agent",
    ("agent", "signatory", "archivist", "tenant-admin"),
)
SAME_TENANT = (
    Attacker("citizen", VICTIM, "citizen", ()),
    Attacker("agent without the role", VICTIM, "agent", ("agent",)),
    Attacker("service client", VICTIM, "service", ()),
)
REFUSED = {401, 403, 404}


def routes_of(under: UnderTest) -> list[tuple[str, str]]:
    """Every (method, path) the app answers, included routers flattened.

    FastAPI 0.165 keeps included routers as `_IncludedRouter` entries in `app.routes`; their
    `effective_route_contexts()` give the routes with their full paths.
    """
    found: list[tuple[str, str]] = []

    def visit(route: object, path: str | None = None) -> None:
        if hasattr(route, "effective_route_contexts"):
            for context in route.effective_route_contexts():
                visit(context.original_route, context.path)
        elif isinstance(route, Route):
            for method in sorted(route.methods or ()):
                found.append((method, path or route.path))

    for route in under.app.routes:
        visit(route)
    return found


def concrete(path: str, params: dict[str, str]) -> str:
    for name, value in params.items():
        path = path.replace("{" + name + "}", value)
    # Parameters naming nothing seeded: a plausible id that exists nowhere.
    while "{" in path:
        start, end = path.index("{"), path.index("}")
        path = path[:start] + "x1" + path[end + 1 :]
    return path


async def call(http: httpx.AsyncClient, method: str, path: str, headers: dict[str, str]):  # type: ignore[no-untyped-def]
    body = {} if method in ("POST", "PUT", "PATCH") else None
    return await http.request(method, path, json=body, headers=headers)


def leaks(under: UnderTest, path: str, response: httpx.Response) -> list[str]:
    """The victim's markers in a response, except those the caller put in the URL itself
    (a 404 may name the id it did not find)."""
    return [m for m in under.markers if m not in path and m in response.text]


@pytest.mark.parametrize("service", SERVICES)
async def test_every_route_has_a_decision_and_refuses_whoever_it_must(
    service: str, nats_cluster: LocalCluster, tmp_path: Path
) -> None:
    async with under_test(service, nats_cluster, tmp_path) as under:
        routes = routes_of(under)
        public, protected = PUBLIC[service], PROTECTED[service]
        undecided = [f"{m} {p}" for m, p in routes if f"{m} {p}" not in public | protected]
        assert undecided == [], f"routes without an authorization decision: {undecided}"
        stale = set(protected) - {f"{m} {p}" for m, p in routes}
        assert stale == set(), f"decisions for routes that no longer exist: {stale}"

        failures: list[str] = []
        other = await under.bearer(
            "intruder", OTHER_TENANT.tenant, roles=OTHER_TENANT.roles, acr=LOA_SUBSTANTIAL
        )
        same = {
            a: await under.bearer(
                f"x-{a.kind}", a.tenant, kind=a.kind, roles=a.roles, acr=LOA_SUBSTANTIAL
            )
            for a in SAME_TENANT
        }
        async with under.client() as http:
            for method, template in routes:
                key = f"{method} {template}"
                if key in public:
                    continue
                decision = protected[key]
                path = concrete(template, under.params)

                anonymous = await call(http, method, path, {})
                if anonymous.status_code != 401:
                    failures.append(f"{key} without a token: {anonymous.status_code}")

                if not (decision.own_data and decision.streams):
                    answer = await call(http, method, path, other)
                    allowed = REFUSED | {422}
                    if decision.own_data:
                        allowed = set(range(200, 500))
                    if answer.status_code not in allowed:
                        failures.append(f"{key} by {OTHER_TENANT.name}: {answer.status_code}")
                    if leaks(under, path, answer):
                        failures.append(
                            f"{key} by {OTHER_TENANT.name} leaked {leaks(under, path, answer)}"
                        )

                for attacker, headers in same.items():
                    admitted = decision.admits(attacker.kind, attacker.roles)
                    if admitted and decision.streams:
                        continue
                    answer = await call(http, method, path, headers)
                    if answer.status_code >= 500 or (
                        not admitted and answer.status_code not in REFUSED
                    ):
                        failures.append(f"{key} by {attacker.name}: {answer.status_code}")
        assert failures == [], "\n".join(failures)
