"""Protecting a service's routes with the territory's access tokens.

Every service trusts one issuer (the identity service). This module verifies access tokens
(RFC 9068 JWTs) against the issuer's JWKS — cached, refreshed when an unknown `kid` shows up —
and turns them into a `Principal`. It refuses `alg: none`, every HMAC algorithm, a wrong
issuer or audience, an expired token and a wrong tenant, with 401/403 and a
`WWW-Authenticate: Bearer error=...` header (RFC 6750).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
import structlog
from fastapi import HTTPException, Request
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from opentelemetry import trace

from mutualis_kernel.config import KernelSettings

#: Asymmetric algorithms only: an HMAC "signature" would let anyone holding the public key mint
#: tokens, and `none` is no signature at all.
ALLOWED_ALGORITHMS = ("ES256", "ES384", "RS256", "PS256", "EdDSA")

LOA_LOW = "urn:mutualis:loa:low"
LOA_SUBSTANTIAL = "urn:mutualis:loa:substantial"
LOA_HIGH = "urn:mutualis:loa:high"
_LOA_ORDER = {LOA_LOW: 1, LOA_SUBSTANTIAL: 2, LOA_HIGH: 3}

Kind = Literal["citizen", "agent", "service"]
PLATFORM_ADMIN = "platform-admin"


def loa_rank(acr: str | None) -> int:
    return _LOA_ORDER.get(acr or "", 0)


@dataclass(frozen=True)
class Principal:
    """Who calls: a citizen, an agent of a tenant, or a service client."""

    subject: str
    tenant: str
    kind: Kind
    roles: frozenset[str] = frozenset()
    acr: str | None = None
    amr: tuple[str, ...] = ()
    client_id: str | None = None
    scopes: frozenset[str] = frozenset()
    token_id: str | None = None
    claims: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @property
    def is_platform_admin(self) -> bool:
        return PLATFORM_ADMIN in self.roles

    def has_role(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def can_act_in(self, tenant: str) -> bool:
        """Tenants are walls: one's own tenant only, unless a platform administrator."""
        return tenant == self.tenant or self.is_platform_admin

    def meets(self, min_acr: str) -> bool:
        return loa_rank(self.acr) >= loa_rank(min_acr)


class AuthError(Exception):
    """A refusal with its RFC 6750 error code and HTTP status."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(description)
        self.status = status
        self.error = error
        self.description = description

    def to_http(self) -> HTTPException:
        challenge = f'Bearer error="{self.error}", error_description="{self.description}"'
        return HTTPException(
            status_code=self.status,
            detail=self.description,
            headers={"WWW-Authenticate": challenge},
        )


def invalid_token(description: str) -> AuthError:
    return AuthError(401, "invalid_token", description)


def insufficient(description: str, error: str = "insufficient_scope") -> AuthError:
    return AuthError(403, error, description)


class JwksCache:
    """The issuer's public keys, fetched on first use and again when a new `kid` appears.

    Refreshes are rate-limited (one per `min_refresh_interval_s`) so a flood of tokens with
    made-up `kid`s cannot make us hammer the issuer. A token with an unknown `kid` that comes
    sooner waits for the next allowed fetch instead of being refused: right after the issuer
    rotates its key, the first tokens of the new key must not fail because the set was
    fetched a moment before. Tokens that were waiting while a fetch happened use its result
    rather than fetch again, so each waits one interval at most.
    """

    def __init__(
        self,
        jwks_url: str,
        *,
        client: httpx.AsyncClient | None = None,
        min_refresh_interval_s: float = 1.0,
    ) -> None:
        self.jwks_url = jwks_url
        self._client = client
        self._keys: KeySet | None = None
        self._kids: set[str] = set()
        self._fetched_at = 0.0
        self._fetches = 0
        self._min_refresh_interval_s = min_refresh_interval_s
        self._lock = asyncio.Lock()

    async def key_set(self, kid: str | None) -> KeySet:
        if self._keys is not None and (kid is None or kid in self._kids):
            return self._keys
        arrived_after = self._fetches
        async with self._lock:
            unknown = self._keys is None or (kid is not None and kid not in self._kids)
            if unknown and (self._keys is None or self._fetches == arrived_after):
                wait = self._min_refresh_interval_s - (time.monotonic() - self._fetched_at)
                if self._keys is not None and wait > 0:
                    await asyncio.sleep(wait)
                await self._fetch()
        if self._keys is None:
            raise invalid_token("issuer keys unavailable")
        return self._keys

    async def _fetch(self) -> None:
        try:
            if self._client is not None:
                response = await self._client.get(self.jwks_url, timeout=5.0)
            else:
                async with httpx.AsyncClient() as client:
                    response = await client.get(self.jwks_url, timeout=5.0)
            response.raise_for_status()
            data = response.json()
            keys = KeySet.import_key_set(data)
        except (httpx.HTTPError, ValueError, JoseError) as error:
            if self._keys is None:
                raise AuthError(503, "temporarily_unavailable", f"JWKS: {error}") from None
            # Keep serving with the keys we have; a failed try counts against the rate limit.
            self._fetched_at = time.monotonic()
            self._fetches += 1
            return
        self._keys = keys
        self._kids = {str(k["kid"]) for k in data.get("keys", []) if "kid" in k}
        self._fetched_at = time.monotonic()
        self._fetches += 1


class TokenVerifier:
    """Verifies access tokens for one audience (`mutualis:<service>`)."""

    @classmethod
    def for_service(cls, settings: KernelSettings, audience: str) -> TokenVerifier:
        """The verifier of a service's settings: its issuer, and where its keys are fetched."""
        return cls(settings.issuer_url, audience, jwks_url=settings.jwks_url)

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        leeway_s: int = 30,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.issuer = issuer.rstrip("/")
        self.audience = audience
        self.leeway_s = leeway_s
        self.jwks = JwksCache(jwks_url or f"{self.issuer}/jwks", client=client)

    async def verify(self, token: str) -> Principal:
        try:
            header = _header(token)
        except ValueError as error:
            raise invalid_token(str(error)) from None
        algorithm = header.get("alg")
        if algorithm not in ALLOWED_ALGORITHMS:
            raise invalid_token(f"algorithm {algorithm!r} is not accepted")
        if header.get("typ", "at+jwt").lower() not in ("at+jwt", "application/at+jwt"):
            raise invalid_token("not an access token")
        kid = header.get("kid")
        keys = await self.jwks.key_set(kid if isinstance(kid, str) else None)
        try:
            decoded = jwt.decode(token, keys, algorithms=list(ALLOWED_ALGORITHMS))
        except JoseError as error:
            raise invalid_token(f"signature not valid: {error.description or error}") from None
        except ValueError as error:
            raise invalid_token(f"malformed token: {error}") from None
        return self._principal(decoded.claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        now = time.time()
        if claims.get("iss") != self.issuer:
            raise invalid_token("wrong issuer")
        audiences = claims.get("aud")
        audience_list = [audiences] if isinstance(audiences, str) else list(audiences or [])
        if self.audience not in audience_list:
            raise invalid_token(f"token is not meant for {self.audience}")
        exp = claims.get("exp")
        if not isinstance(exp, (int, float)) or exp + self.leeway_s < now:
            raise invalid_token("token expired")
        nbf = claims.get("nbf")
        if isinstance(nbf, (int, float)) and nbf - self.leeway_s > now:
            raise invalid_token("token not yet valid")
        kind = claims.get("kind")
        tenant = claims.get("tenant")
        subject = claims.get("sub")
        if kind not in ("citizen", "agent", "service") or not tenant or not subject:
            raise invalid_token("token lacks sub, tenant or kind")
        roles = claims.get("roles") or []
        scope = claims.get("scope") or ""
        return Principal(
            subject=str(subject),
            tenant=str(tenant),
            kind=kind,
            roles=frozenset(str(r) for r in roles),
            acr=claims.get("acr"),
            amr=tuple(claims.get("amr") or ()),
            client_id=claims.get("client_id"),
            scopes=frozenset(str(scope).split()),
            token_id=claims.get("jti"),
            claims=claims,
        )


def _header(token: str) -> dict[str, Any]:
    import base64
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a signed JWT")
    padded = parts[0] + "=" * (-len(parts[0]) % 4)
    try:
        header = json.loads(base64.urlsafe_b64decode(padded))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("unreadable JWT header") from None
    if not isinstance(header, dict):
        raise ValueError("unreadable JWT header")
    return header


def bearer_token(request: Request) -> str:
    value = request.headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError(401, "invalid_request", "a Bearer access token is required").to_http()
    return token.strip()


def authenticated(
    verifier: TokenVerifier | Callable[[], TokenVerifier],
    *,
    roles: Iterable[str] = (),
    kinds: Iterable[Kind] = ("citizen", "agent", "service"),
    min_acr: str | None = None,
    scopes: Iterable[str] = (),
) -> Callable[[Request], Awaitable[Principal]]:
    """A FastAPI dependency: the caller's `Principal`, or 401/403 with a clear challenge.

    `roles`: any one of them suffices (platform administrators pass every role check).
    `min_acr`: the assurance level the session must have reached (403
    `insufficient_user_authentication`, RFC 9470, so the client can step up through identity).
    """
    wanted_roles = frozenset(roles)
    wanted_kinds = frozenset(kinds)
    wanted_scopes = frozenset(scopes)

    async def dependency(request: Request) -> Principal:
        token = bearer_token(request)
        active = verifier if isinstance(verifier, TokenVerifier) else verifier()
        try:
            principal = await active.verify(token)
            _authorise(principal, wanted_roles, wanted_kinds, wanted_scopes, min_acr)
        except AuthError as error:
            raise error.to_http() from None
        request.state.principal = principal
        # The tenant of a verified token, never a header a caller could set: what SREs filter
        # a request's trace and log lines on.
        trace.get_current_span().set_attribute("mutualis.tenant", principal.tenant)
        structlog.contextvars.bind_contextvars(tenant=principal.tenant)
        return principal

    return dependency


def _authorise(
    principal: Principal,
    roles: frozenset[str],
    kinds: frozenset[str],
    scopes: frozenset[str],
    min_acr: str | None,
) -> None:
    if principal.kind not in kinds:
        raise insufficient(f"{principal.kind} tokens cannot call this operation")
    if roles and not principal.is_platform_admin and not principal.roles.intersection(roles):
        raise insufficient(f"one of the roles {sorted(roles)} is required")
    if scopes and not scopes.issubset(principal.scopes):
        raise insufficient(f"scopes {sorted(scopes)} are required")
    if min_acr is not None and not principal.meets(min_acr):
        raise AuthError(
            403,
            "insufficient_user_authentication",
            f"this operation requires acr {min_acr}; authenticate again with acr_values={min_acr}",
        )


def require_tenant(principal: Principal, tenant: str) -> None:
    """Refuse (403) a principal acting in another tenant's space."""
    if not principal.can_act_in(tenant):
        refusal = AuthError(403, "insufficient_scope", "this resource belongs to another tenant")
        raise refusal.to_http()
