"""The OpenID Connect provider's use cases: authorize, log in, codes, tokens, sessions.

HTTP-free: the entry points hand in form fields and get models or `OAuthError`s back. Every
piece of state goes through the KV stores, so whichever instance receives the next request of
a flow (the login POST, the code exchange, a refresh) can carry on.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time
from collections import OrderedDict
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import unquote_plus, urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from pydantic import BaseModel, ValidationError

from identity.adapters.keys import KeyStore
from identity.adapters.pending import PendingLogins
from identity.adapters.repository import StaleWrite
from identity.adapters.throttle import FailureMirror
from identity.domain.devices import KnownDevices, families, fingerprint
from identity.domain.errors import AlreadyExists, InvalidCommand, OAuthError
from identity.domain.events import (
    DeviceFirstSeen,
    LoginFailed,
    LoginSucceeded,
    RefreshReused,
)
from identity.domain.grants import (
    AuthorizationCode,
    FailureCount,
    RefreshFamily,
    RefreshToken,
    ThrottlePolicy,
    decide_refresh,
    is_throttled,
)
from identity.domain.model import (
    LOA_LOW,
    Client,
    User,
    acr_for,
    acr_rank,
    new_id,
    strongest_requested,
)
from identity.domain.security import (
    new_secret,
    pkce_matches,
    secret_digest,
    secret_matches,
    totp_timestep,
    valid_challenge,
)
from identity.service_layer.handlers import Deps, publish_all
from identity.settings import IdentitySettings

SIGNING_ALG = "ES256"


#: Devices seen today that an instance keeps in memory (user id and device digest: no more).
SEEN_TODAY_REMEMBERED = 10_000


class AuthRequest(BaseModel):
    """A validated authorization request, kept while the person logs in."""

    client_id: str
    redirect_uri: str
    scopes: list[str]
    state: str | None = None
    nonce: str | None = None
    code_challenge: str
    acr_required: str | None = None
    prompt: str | None = None


class BadClientRequest(Exception):
    """Client or redirect URI not trustworthy: show an error page, never redirect (§4.1.2.1)."""


class RedirectError(Exception):
    def __init__(self, redirect_uri: str, error: str, description: str, state: str | None):
        super().__init__(description)
        self.location = add_query(
            redirect_uri,
            {"error": error, "error_description": description, "state": state},
        )


class Session(BaseModel):
    session_id: str
    user_id: str
    acr: str
    amr: list[str]
    auth_time: int


class DeviceSighting(BaseModel):
    """The browser a login comes from: its device cookie's id and its User-Agent header."""

    device_id: str
    user_agent: str | None = None


def add_query(uri: str, params: Mapping[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{uri}{'&' if '?' in uri else '?'}{query}"


class Provider:
    def __init__(
        self,
        deps: Deps,
        keys: KeyStore,
        settings: IdentitySettings,
        failures: FailureMirror | None = None,
    ) -> None:
        self.deps = deps
        self.pending = PendingLogins(settings.key_encryption_secret.get_secret_value())
        self._seen_today: OrderedDict[tuple[str, str], int] = OrderedDict()
        self.stores = deps.stores
        self.keys = keys
        self.settings = settings
        self.issuer = settings.issuer.rstrip("/")
        self.throttle = ThrottlePolicy(
            settings.throttle_per_account,
            settings.throttle_per_address,
            settings.throttle_window_s,
        )
        self.failures = failures
        # argon2id is memory-hard: more hashes at once than cores only thrash the caches
        # (measured: 6 concurrent verifications cost 20 % more CPU each than 1 or 2), and
        # asyncio's default pool would also run them beside every other to_thread call.
        self._hashing = ThreadPoolExecutor(
            max_workers=max(1, len(os.sched_getaffinity(0))), thread_name_prefix="argon2"
        )

    def close(self) -> None:
        """Let the hashing threads go (the composition root calls it on the way out)."""
        self._hashing.shutdown(wait=False, cancel_futures=True)

    # -- authorization request ------------------------------------------------------------

    async def validate_authorization(self, params: Mapping[str, str]) -> AuthRequest:
        client = await self.stores.clients.find(params.get("client_id", ""))
        if client is None:
            raise BadClientRequest("client inconnu")
        redirect_uri = params.get("redirect_uri")
        if not client.redirect_uri_allowed(redirect_uri):
            raise BadClientRequest("adresse de retour non enregistrée pour ce client")
        assert redirect_uri is not None
        state = params.get("state")

        def refuse(error: str, description: str) -> RedirectError:
            return RedirectError(redirect_uri, error, description, state)

        if params.get("response_type") != "code":
            raise refuse("unsupported_response_type", "only response_type=code is supported")
        if "authorization_code" not in client.grant_types:
            raise refuse("unauthorized_client", "this client may not use the code flow")
        if params.get("request") or params.get("request_uri"):
            raise refuse("request_not_supported", "request objects are not supported")
        method = params.get("code_challenge_method")
        challenge = params.get("code_challenge")
        if method != "S256" or not valid_challenge(challenge):
            raise refuse("invalid_request", "PKCE with code_challenge_method=S256 is required")
        try:
            scopes = client.granted_scopes(params.get("scope"))
        except InvalidCommand as error:
            raise refuse("invalid_scope", str(error)) from None
        prompt = params.get("prompt")
        if prompt not in (None, "", "login", "none", "consent"):
            raise refuse("invalid_request", f"unsupported prompt {prompt!r}")
        assert challenge is not None
        return AuthRequest(
            client_id=client.client_id,
            redirect_uri=redirect_uri,
            scopes=scopes,
            state=state,
            nonce=params.get("nonce"),
            code_challenge=challenge,
            acr_required=strongest_requested(params.get("acr_values")),
            prompt=prompt or None,
        )

    def save_pending(self, request: AuthRequest, user_id: str | None = None) -> str:
        """The sealed state of a login in progress, for the form (adapters.pending)."""
        return self.pending.seal(request.model_dump(mode="json"), user_id)

    def load_pending(self, pending_id: str) -> tuple[AuthRequest, str | None] | None:
        opened = self.pending.open(pending_id)
        if opened is None:
            return None
        request, user_id = opened
        try:
            return AuthRequest.model_validate(request), user_id
        except ValidationError:
            return None

    def session_suffices(self, session: Session | None, request: AuthRequest) -> bool:
        if session is None or request.prompt == "login":
            return False
        return acr_rank(session.acr) >= acr_rank(request.acr_required or LOA_LOW)

    # -- login ----------------------------------------------------------------------------

    async def _failures(self, key: str) -> tuple[FailureCount, int | None]:
        """The stored count and its revision (for compare-and-set), read from KV."""
        found = await self.stores.throttle.get(key)
        if found is None:
            return FailureCount(), None
        return FailureCount(timestamps=list(found[0]["timestamps"])), found[1]

    async def _recent_failures(self, key: str) -> FailureCount:
        """The count a throttling check needs: from the watched copy when it is current."""
        known = self.failures.recent(key) if self.failures is not None else None
        if known is not None:
            return FailureCount(timestamps=known)
        return (await self._failures(key))[0]

    async def _record_failure(self, key: str) -> None:
        for _ in range(5):
            count, revision = await self._failures(key)
            count.record(time.time(), self.throttle.window_s)
            try:
                if revision is None:
                    await self.stores.throttle.create(key, {"timestamps": count.timestamps})
                else:
                    await self.stores.throttle.update(
                        key, {"timestamps": count.timestamps}, revision
                    )
                if self.failures is not None:
                    self.failures.note(key, count.timestamps)
                return
            except (AlreadyExists, StaleWrite):
                continue

    async def check_password(self, username: str, password: str, address: str) -> User | None:
        """The user if the password is right and nothing throttles the attempt, else None.

        The caller shows one message for every refusal, so nothing reveals whether the
        account exists; an unknown account still costs one argon2 verification.
        """
        account_key = f"acct.{secret_digest(username.strip().lower())}"
        address_key = f"addr.{secret_digest(address)}"
        account = await self._recent_failures(account_key)
        by_address = await self._recent_failures(address_key)
        user = await self.stores.users.by_username(username) if username.strip() else None
        if is_throttled(self.throttle, account, by_address, time.time()):
            await self._login_failed(user, "throttled")
            return None
        # argon2 releases the GIL: in a thread, one login hashes on one core while the event
        # loop keeps serving other requests on the other.
        stored = user.password_hash if user else None
        ok = await asyncio.get_running_loop().run_in_executor(
            self._hashing, self.deps.passwords.verify, stored, password
        )
        if not ok or user is None:
            await self._record_failure(account_key)
            await self._record_failure(address_key)
            await self._login_failed(user, "bad_credentials")
            return None
        if user.disabled:
            await self._login_failed(user, "disabled")
            return None
        return user

    async def check_otp(self, user: User, code: str) -> bool:
        if user.totp_secret is None:
            return False
        step = totp_timestep(user.totp_secret, code, time.time())
        if step is not None:
            try:
                # One code, one use: a second use of the same time step is refused.
                await self.stores.throttle.create(f"otp.{user.id}.{step}", {"used": True})
                return True
            except AlreadyExists:
                pass
        await self._record_failure(f"acct.{secret_digest(user.username)}")
        await self._login_failed(user, "bad_otp")
        return False

    async def _login_failed(self, user: User | None, reason: str) -> None:
        tenant = user.tenant if user else self.deps.tenants.metropolis.slug
        event = LoginFailed(user_id=user.id if user else "unknown", tenant=tenant, reason=reason)
        await publish_all(self.deps, [event], event.user_id)

    async def sign_in(
        self,
        user: User,
        amr: list[str],
        request: AuthRequest,
        previous: Session | None,
        device: DeviceSighting | None = None,
    ) -> tuple[Session, str]:
        """A completed login: the new session and the redirect that hands its code to the
        client. The session, the code and the `login.succeeded` event are written at once;
        none depends on another, and a failure of any fails the login (a code whose
        redirect was never sent expires unused)."""
        if previous is not None and previous.user_id == user.id:
            amr = sorted(set(previous.amr) | set(amr))
        session = Session(
            session_id=new_secret(24),
            user_id=user.id,
            acr=acr_for(tuple(amr)),
            amr=amr,
            auth_time=int(time.time()),
        )
        _, location = await asyncio.gather(
            self._record_login(user, session, request.client_id, previous, device),
            self.issue_code(request, session),
        )
        return session, location

    async def _record_login(
        self,
        user: User,
        session: Session,
        client_id: str | None,
        previous: Session | None,
        device: DeviceSighting | None,
    ) -> None:
        # One wave of independent writes: a login waits for one round trip, not four, and
        # the event loop (sharing its core with the hashing thread) wakes up once for them.
        event = LoginSucceeded(
            user_id=user.id,
            tenant=user.tenant,
            acr=session.acr,
            amr=tuple(session.amr),
            client_id=client_id,
        )
        writes = [
            self.stores.sessions.put(
                f"s.{secret_digest(session.session_id)}", session.model_dump()
            ),
            publish_all(self.deps, [event], user.id),
        ]
        if previous is not None:
            writes.append(self.end_session(previous.session_id))
        if device is not None:
            writes.append(self.note_device(user, device, client_id))
        await asyncio.gather(*writes)

    async def note_device(self, user: User, device: DeviceSighting, client_id: str | None) -> bool:
        """Remember the device a login came from; True (and `device.first_seen` published)
        when the account knew other devices but not this one (identity.domain.devices)."""
        browser, system = families(device.user_agent)
        digest = fingerprint(device.device_id, browser, system)
        key = f"d.{user.id}"
        today = int(time.time() // 86400)
        if self._seen_today.get((user.id, digest)) == today:
            return False  # this instance already saw it today: not even a read
        for _ in range(5):
            found = await self.stores.devices.get_model(key, KnownDevices)
            known = found[0] if found else KnownDevices()
            if known.knows(digest) and known.seen[digest] == today:
                self._remember_seen(user.id, digest, today)
                return False  # seen today already: no write for every login of the day
            updated = known.sighted(digest, today).model_dump()
            try:
                if found is None:
                    await self.stores.devices.create(key, updated)
                else:
                    await self.stores.devices.update(key, updated, found[1])
            except (AlreadyExists, StaleWrite):
                continue  # a login of the same account elsewhere at the same moment
            self._remember_seen(user.id, digest, today)
            if known.knows(digest) or not known.seen:
                return False
            event = DeviceFirstSeen(
                user_id=user.id, tenant=user.tenant, browser=browser, os=system, client_id=client_id
            )
            await publish_all(self.deps, [event], user.id)
            return True
        return False

    def _remember_seen(self, user_id: str, digest: str, day: int) -> None:
        # A bounded memory of the devices recorded today: the most recent first to stay. Only
        # ever skips a write that would change nothing (the bucket already says "today").
        self._seen_today[(user_id, digest)] = day
        self._seen_today.move_to_end((user_id, digest))
        while len(self._seen_today) > SEEN_TODAY_REMEMBERED:
            self._seen_today.popitem(last=False)

    async def session(self, session_id: str | None) -> Session | None:
        if not session_id or len(session_id) > 100:
            return None
        found = await self.stores.sessions.get(f"s.{secret_digest(session_id)}")
        if found is None:
            return None
        session = Session.model_validate(found[0])
        if time.time() > session.auth_time + self.settings.session_ttl_s:
            return None
        user = await self.stores.users.find(session.user_id)
        if user is None or user.disabled:
            return None
        return session

    async def end_session(self, session_id: str) -> None:
        if session_id and len(session_id) <= 100:
            await self.stores.sessions.delete(f"s.{secret_digest(session_id)}")

    async def issue_code(self, request: AuthRequest, session: Session) -> str:
        code = new_secret(32)
        record = AuthorizationCode(
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            user_id=session.user_id,
            scopes=request.scopes,
            code_challenge=request.code_challenge,
            nonce=request.nonce,
            acr=session.acr,
            amr=session.amr,
            auth_time=session.auth_time,
            session_id=secret_digest(session.session_id),
            issued_at=time.time(),
        )
        await self.stores.codes.create(f"c.{secret_digest(code)}", record.model_dump())
        return add_query(
            request.redirect_uri, {"code": code, "state": request.state, "iss": self.issuer}
        )

    # -- token endpoint -------------------------------------------------------------------

    async def authenticate_client(
        self, form: Mapping[str, str], authorization: str | None, address: str = "unknown"
    ) -> Client:
        """The client these credentials prove, under the same throttling rules as logins.

        Failures count per client id (known or not, so a refusal reveals nothing) and per
        address, in their own keys: a misconfigured service on a shared host must not lock
        people out of the login page from that host. While either count is over its limit,
        even the right secret is refused with 429.
        """
        client_id, secret = form.get("client_id"), form.get("client_secret")
        basic_error: OAuthError | None = None
        if authorization and authorization.lower().startswith("basic "):
            try:
                decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                decoded = ""
            basic_id, sep, basic_secret = decoded.partition(":")
            if not sep:
                basic_error = OAuthError("invalid_client", "malformed Basic credentials", 401)
            else:
                client_id, secret = unquote_plus(basic_id), unquote_plus(basic_secret)
        client_key = f"cli.{secret_digest(client_id)}" if client_id and not basic_error else None
        address_key = f"caddr.{secret_digest(address)}"
        by_client = await self._recent_failures(client_key) if client_key else FailureCount()
        by_address = await self._recent_failures(address_key)
        if is_throttled(self.throttle, by_client, by_address, time.time()):
            raise OAuthError(
                "invalid_client", "too many failed client authentications, retry later", 429
            )
        try:
            if basic_error is not None:
                raise basic_error
            return await self._client_for(client_id, secret)
        except OAuthError:
            if client_key is not None:
                await self._record_failure(client_key)
            await self._record_failure(address_key)
            raise

    async def _client_for(self, client_id: str | None, secret: str | None) -> Client:
        if not client_id:
            raise OAuthError("invalid_client", "client authentication is required", 401)
        client = await self.stores.clients.find(client_id)
        if client is None:
            raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
        if client.confidential:
            if not secret or not secret_matches(client.secret_hash, secret):
                raise OAuthError("invalid_client", "unknown client or wrong secret", 401)
        elif secret:
            raise OAuthError("invalid_client", "a public client has no secret", 401)
        return client

    async def token(
        self, form: Mapping[str, str], authorization: str | None, address: str = "unknown"
    ) -> dict[str, Any]:
        grant_type = form.get("grant_type")
        if not grant_type:
            raise OAuthError("invalid_request", "grant_type is required")
        if grant_type not in ("authorization_code", "refresh_token", "client_credentials"):
            raise OAuthError(
                "unsupported_grant_type", f"grant_type {grant_type!r} is not supported"
            )
        client = await self.authenticate_client(form, authorization, address)
        if grant_type not in client.grant_types:
            raise OAuthError("unauthorized_client", f"this client may not use {grant_type}")
        if grant_type == "authorization_code":
            return await self._exchange_code(client, form)
        if grant_type == "refresh_token":
            return await self._refresh(client, form)
        return await self._client_credentials(client, form)

    async def _exchange_code(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        code = form.get("code")
        if not code:
            raise OAuthError("invalid_request", "code is required")
        key = f"c.{secret_digest(code)}"
        found = await self.stores.codes.get_model(key, AuthorizationCode)
        if found is None:
            raise OAuthError("invalid_grant", "unknown or expired code")
        record, revision = found
        if record.client_id != client.client_id:
            raise OAuthError("invalid_grant", "this code was issued to another client")
        if record.used:
            if record.family_id:
                await self.revoke_family(record.family_id)
            raise OAuthError("invalid_grant", "this code has already been used")
        family_id = new_id()
        record.used, record.family_id = True, family_id
        try:
            await self.stores.codes.update(key, record.model_dump(), revision)
        except StaleWrite:
            raise OAuthError("invalid_grant", "this code has already been used") from None
        if record.expired(time.time()):
            raise OAuthError("invalid_grant", "this code has expired")
        if form.get("redirect_uri") != record.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri differs from the authorization request")
        if not pkce_matches(record.code_challenge, form.get("code_verifier")):
            raise OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        user = await self.stores.users.find(record.user_id)
        if user is None or user.disabled:
            raise OAuthError("invalid_grant", "the account is no longer active")
        return await self._user_tokens(
            client,
            user,
            record.scopes,
            record.acr,
            record.amr,
            record.auth_time,
            nonce=record.nonce,
            family_id=family_id,
            session_id=record.session_id,
        )

    async def _user_tokens(
        self,
        client: Client,
        user: User,
        scopes: list[str],
        acr: str,
        amr: list[str],
        auth_time: int,
        *,
        nonce: str | None,
        family_id: str,
        session_id: str | None,
    ) -> dict[str, Any]:
        now = int(time.time())
        access = await self.sign(
            {
                "iss": self.issuer,
                "sub": user.id,
                "aud": list(client.audiences),
                "iat": now,
                "exp": now + self.settings.access_token_ttl_s,
                "jti": new_id(),
                "client_id": client.client_id,
                "scope": " ".join(scopes),
                "tenant": user.tenant,
                "kind": user.kind,
                "roles": list(user.roles),
                "acr": acr,
                "amr": list(amr),
                "auth_time": auth_time,
                # An agent's name, and only an agent's: the services print it where the act
                # needs its author named (the signer of a signature, the proof report).
                **({"name": user.name} if user.kind == "agent" and user.name else {}),
            },
            typ="at+jwt",
        )
        response: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "scope": " ".join(scopes),
        }
        if "openid" in scopes:
            claims: dict[str, Any] = {
                "iss": self.issuer,
                "sub": user.id,
                "aud": client.client_id,
                "azp": client.client_id,
                "iat": now,
                "exp": now + self.settings.id_token_ttl_s,
                "auth_time": auth_time,
                "acr": acr,
                "amr": list(amr),
                "tenant": user.tenant,
                "kind": user.kind,
                "roles": list(user.roles),
            }
            if nonce:
                claims["nonce"] = nonce
            if session_id:
                claims["sid"] = session_id[:32]
            claims.update(profile_claims(user, scopes))
            response["id_token"] = await self.sign(claims, typ="JWT")
        if "refresh_token" in client.grant_types:
            response["refresh_token"] = await self._new_refresh(
                client, user, scopes, acr, amr, auth_time, family_id
            )
        return response

    async def _new_refresh(
        self,
        client: Client,
        user: User,
        scopes: list[str],
        acr: str,
        amr: list[str],
        auth_time: int,
        family_id: str,
    ) -> str:
        family_key = f"f.{family_id}"
        if await self.stores.refresh.get(family_key) is None:
            family = RefreshFamily(family_id=family_id, user_id=user.id, client_id=client.client_id)
            await self.stores.refresh.put(family_key, family.model_dump())
        token = new_secret(32)
        record = RefreshToken(
            family_id=family_id,
            client_id=client.client_id,
            user_id=user.id,
            scopes=scopes,
            acr=acr,
            amr=amr,
            auth_time=auth_time,
            expires_at=time.time() + self.settings.refresh_token_ttl_s,
        )
        await self.stores.refresh.create(f"r.{secret_digest(token)}", record.model_dump())
        return token

    async def _refresh(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        token = form.get("refresh_token")
        if not token:
            raise OAuthError("invalid_request", "refresh_token is required")
        key = f"r.{secret_digest(token)}"
        found = await self.stores.refresh.get_model(key, RefreshToken)
        if found is None:
            raise OAuthError("invalid_grant", "unknown refresh token")
        record, revision = found
        family_found = await self.stores.refresh.get_model(f"f.{record.family_id}", RefreshFamily)
        family = family_found[0] if family_found else None
        decision = decide_refresh(record, family, client.client_id, time.time())
        if decision == "rotate":
            record.status = "used"
            try:
                await self.stores.refresh.update(key, record.model_dump(), revision)
            except StaleWrite:
                decision = "reuse_detected"  # a concurrent use got there first
        if decision == "reuse_detected":
            await self.revoke_family(record.family_id)
            user = await self.stores.users.find(record.user_id)
            if user is not None:
                event = RefreshReused(
                    user_id=user.id,
                    tenant=user.tenant,
                    client_id=client.client_id,
                    family_id=record.family_id,
                )
                await publish_all(self.deps, [event], user.id)
            raise OAuthError("invalid_grant", "refresh token reused: the session was revoked")
        if decision != "rotate":
            raise OAuthError("invalid_grant", f"refresh token {decision.replace('_', ' ')}")
        scopes = record.scopes
        if form.get("scope"):
            narrower = form["scope"].split()
            if not set(narrower) <= set(record.scopes):
                raise OAuthError("invalid_scope", "a refresh cannot widen the scope")
            scopes = narrower
        user = await self.stores.users.find(record.user_id)
        if user is None or user.disabled:
            await self.revoke_family(record.family_id)
            raise OAuthError("invalid_grant", "the account is no longer active")
        return await self._user_tokens(
            client,
            user,
            scopes,
            record.acr,
            record.amr,
            record.auth_time,
            nonce=None,
            family_id=record.family_id,
            session_id=None,
        )

    async def revoke_family(self, family_id: str) -> None:
        key = f"f.{family_id}"
        found = await self.stores.refresh.get(key)
        if found is not None:
            found[0]["revoked"] = True
            await self.stores.refresh.put(key, found[0])

    async def _client_credentials(self, client: Client, form: Mapping[str, str]) -> dict[str, Any]:
        if not client.confidential:
            raise OAuthError(
                "unauthorized_client", "client_credentials needs a confidential client"
            )
        try:
            scopes = client.granted_scopes(form.get("scope"))
        except InvalidCommand as error:
            raise OAuthError("invalid_scope", str(error)) from None
        scopes = [s for s in scopes if s not in ("openid", "offline_access")]
        now = int(time.time())
        access = await self.sign(
            {
                "iss": self.issuer,
                "sub": client.client_id,
                "aud": list(client.audiences),
                "iat": now,
                "exp": now + self.settings.access_token_ttl_s,
                "jti": new_id(),
                "client_id": client.client_id,
                "scope": " ".join(scopes),
                "tenant": client.tenant,
                "kind": "service",
                "roles": list(client.roles),
            },
            typ="at+jwt",
        )
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.settings.access_token_ttl_s,
            "scope": " ".join(scopes),
        }

    # -- tokens we issued ---------------------------------------------------------------

    async def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        return (await self.keys.signer()).sign(claims, typ=typ)

    async def verify_access_token(self, token: str, audience: str | None) -> dict[str, Any]:
        """Claims of a valid, unexpired, unrevoked access token of ours, or OAuthError."""
        try:
            header = jwt_header(token)
            if header.get("alg") != SIGNING_ALG or header.get("typ") != "at+jwt":
                raise OAuthError("invalid_token", "not an access token of this issuer", 401)
            keys = await self.keys.key_set(header.get("kid"))
            claims = jwt.decode(token, keys, algorithms=[SIGNING_ALG]).claims
        except (JoseError, ValueError) as error:
            raise OAuthError("invalid_token", f"token not valid: {error}", 401) from None
        if claims.get("iss") != self.issuer:
            raise OAuthError("invalid_token", "wrong issuer", 401)
        exp = claims.get("exp")
        if not isinstance(exp, int | float) or exp < time.time():
            raise OAuthError("invalid_token", "token expired", 401)
        if audience is not None and audience not in (claims.get("aud") or []):
            raise OAuthError("invalid_token", f"token is not meant for {audience}", 401)
        if await self.stores.revoked.get(f"j.{claims.get('jti')}") is not None:
            raise OAuthError("invalid_token", "token revoked", 401)
        return dict(claims)

    async def introspect(self, client: Client, token: str | None) -> dict[str, Any]:
        if not client.confidential:
            raise OAuthError("invalid_client", "introspection needs a confidential client", 401)
        if not token:
            raise OAuthError("invalid_request", "token is required")
        if token.count(".") == 2:
            try:
                claims = await self.verify_access_token(token, None)
            except OAuthError:
                return {"active": False}
            return {"active": True, "token_type": "Bearer", **claims}
        if len(token) > 200:
            return {"active": False}
        found = await self.stores.refresh.get_model(f"r.{secret_digest(token)}", RefreshToken)
        if found is None or found[0].client_id != client.client_id:
            return {"active": False}
        record = found[0]
        family = await self.stores.refresh.get_model(f"f.{record.family_id}", RefreshFamily)
        if (
            decide_refresh(record, family[0] if family else None, client.client_id, time.time())
            != "rotate"
        ):
            return {"active": False}
        return {
            "active": True,
            "token_type": "refresh_token",
            "client_id": record.client_id,
            "sub": record.user_id,
            "scope": " ".join(record.scopes),
            "exp": int(record.expires_at),
            "iss": self.issuer,
        }

    async def revoke(self, client: Client, token: str | None) -> None:
        """RFC 7009: unknown or foreign tokens are ignored (the answer is 200 either way)."""
        if not token:
            raise OAuthError("invalid_request", "token is required")
        if token.count(".") == 2:
            try:
                claims = await self.verify_access_token(token, None)
            except OAuthError:
                return
            if claims.get("client_id") == client.client_id:
                await self.stores.revoked.put(f"j.{claims['jti']}", {"exp": claims["exp"]})
            return
        if len(token) > 200:
            return
        found = await self.stores.refresh.get_model(f"r.{secret_digest(token)}", RefreshToken)
        if found is not None and found[0].client_id == client.client_id:
            await self.revoke_family(found[0].family_id)

    async def id_token_claims(self, id_token: str) -> dict[str, Any] | None:
        """Claims of an ID token we signed, expired or not (logout hints are often old)."""
        try:
            keys = await self.keys.key_set(jwt_header(id_token).get("kid"))
            return dict(jwt.decode(id_token, keys, algorithms=[SIGNING_ALG]).claims)
        except (JoseError, ValueError):
            return None


def profile_claims(user: User, scopes: list[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "profile" in scopes:
        claims["name"] = user.name
        claims["preferred_username"] = user.username
    if "email" in scopes and user.email:
        claims["email"] = user.email
        claims["email_verified"] = False
    return claims


def jwt_header(token: str) -> dict[str, Any]:
    import json

    parts = token.split(".")
    if len(parts) != 3:
        raise ValueError("not a signed JWT")
    try:
        header = json.loads(base64.urlsafe_b64decode(parts[0] + "=" * (-len(parts[0]) % 4)))
    except (ValueError, UnicodeDecodeError):
        raise ValueError("unreadable JWT header") from None
    if not isinstance(header, dict):
        raise ValueError("unreadable JWT header")
    return header
