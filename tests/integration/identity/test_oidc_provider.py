"""The identity service as a relying party sees it: a real OIDC client library (authlib)
talking HTTP to a real `python -m identity` on a real three-datacenter NATS cluster."""

from __future__ import annotations

import asyncio
import base64
import json
import re
import secrets
import time
from datetime import UTC, datetime
from typing import Any

import httpx
import pyotp
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.jose import JsonWebKey, jwt
from authlib.oidc.core import CodeIDToken
from joserfc import jwt as jose_jwt
from joserfc.jwk import ECKey

from identity.devseed import (
    DEMO_CLIENT_ID,
    DEMO_PASSWORD,
    DEMO_REDIRECT_URI,
    demo_totp_secret,
    service_client_secret,
)
from mutualis_kernel.audit import AuditReader
from mutualis_kernel.auth import TokenVerifier

from .conftest import RunningIdentity, start_identity, stop_identity

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

SUBSTANTIAL = "urn:mutualis:loa:substantial"


async def discover(base: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        return (await http.get(f"{base}/.well-known/openid-configuration")).json()


def hidden_request_id(html: str) -> str:
    match = re.search(r'name="request" value="([^"]+)"', html)
    assert match, html
    return match.group(1)


class Browser:
    """A person's browser: follows the authorization request and fills the login forms."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.http = httpx.AsyncClient(base_url=base, follow_redirects=False)

    async def authorize(self, url: str) -> httpx.Response:
        return await self.http.get(url)

    async def login(
        self, url: str, username: str, password: str = DEMO_PASSWORD, otp: str | None = None
    ) -> str:
        page = await self.authorize(url)
        if page.status_code == 303:
            return page.headers["location"]
        assert page.status_code == 200, page.text
        request_id = hidden_request_id(page.text)
        if 'name="password"' in page.text:
            answer = await self.http.post(
                "/login",
                data={"request": request_id, "username": username, "password": password},
            )
        else:
            answer = page
        if answer.status_code == 200 and 'name="code"' in answer.text:
            assert otp is not None, "a second factor was asked for"
            answer = await self.http.post("/login/otp", data={"request": request_id, "code": otp})
        assert answer.status_code == 303, answer.text
        return answer.headers["location"]

    async def aclose(self) -> None:
        await self.http.aclose()


def rp(scope: str = "openid profile email offline_access") -> AsyncOAuth2Client:
    return AsyncOAuth2Client(
        client_id=DEMO_CLIENT_ID,
        redirect_uri=DEMO_REDIRECT_URI,
        scope=scope,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )


async def code_flow(
    identity: RunningIdentity, username: str, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """Log `username` in through the demo client; returns (tokens, metadata, nonce)."""
    meta = await discover(identity.url)
    client = rp()
    verifier = generate_token(48)
    nonce = generate_token(16)
    otp = extra.pop("otp", None)
    url, _state = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, nonce=nonce, **extra
    )
    browser = Browser(identity.url)
    try:
        location = await browser.login(url, username, otp=otp)
    finally:
        await browser.aclose()
    token = await client.fetch_token(
        meta["token_endpoint"], authorization_response=location, code_verifier=verifier
    )
    await client.aclose()
    return dict(token), meta, nonce


async def validated_id_token(meta: dict[str, Any], id_token: str, nonce: str) -> Any:
    async with httpx.AsyncClient() as http:
        jwks = (await http.get(meta["jwks_uri"])).json()
    claims = jwt.decode(
        id_token,
        JsonWebKey.import_key_set(jwks),
        claims_cls=CodeIDToken,
        claims_options={"iss": {"essential": True, "value": meta["issuer"]}},
        claims_params={"nonce": nonce, "client_id": DEMO_CLIENT_ID},
    )
    claims.validate()
    return claims


def unverified_claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


async def service_token(identity: RunningIdentity, service: str = "parapheur") -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{identity.url}/token",
            data={"grant_type": "client_credentials"},
            auth=(f"svc-{service}", service_client_secret(service)),
        )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


async def introspect(identity: RunningIdentity, token: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{identity.url}/introspect",
            data={"token": token},
            auth=("svc-parapheur", service_client_secret("parapheur")),
        )
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


# -- the happy paths --------------------------------------------------------------------------


async def test_a_citizen_logs_in_with_code_and_pkce_and_the_rp_validates_everything(
    identity_dc1: RunningIdentity,
) -> None:
    tokens, meta, nonce = await code_flow(identity_dc1, "camille.martin")
    claims = await validated_id_token(meta, tokens["id_token"], nonce)
    assert claims["kind"] == "citizen"
    assert claims["acr"] == "urn:mutualis:loa:low"
    assert claims["amr"] == ["pwd"]

    access = unverified_claims(tokens["access_token"])
    assert access["tenant"] == claims["tenant"]
    assert "name" not in access  # a citizen's name stays out of access tokens
    assert "mutualis:parapheur" in access["aud"]
    header = json.loads(base64.urlsafe_b64decode(tokens["access_token"].split(".")[0] + "=="))
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "ES256"

    async with httpx.AsyncClient() as http:
        info = await http.get(
            meta["userinfo_endpoint"],
            headers={"Authorization": f"Bearer {tokens['access_token']}"},
        )
    assert info.status_code == 200
    assert info.json()["sub"] == claims["sub"]
    assert info.json()["preferred_username"] == "camille.martin"


async def test_refresh_rotates_and_a_reused_refresh_token_revokes_the_family(
    identity_dc1: RunningIdentity,
) -> None:
    tokens, meta, _ = await code_flow(identity_dc1, "agent.bordeaux")
    # An agent's access token names them: parapheur writes it into their signatures.
    assert unverified_claims(tokens["access_token"])["name"] == "Agent Bordeaux"
    client = rp()
    first = tokens["refresh_token"]
    rotated = await client.refresh_token(meta["token_endpoint"], refresh_token=first)
    assert rotated["refresh_token"] != first

    async with httpx.AsyncClient() as http:
        replay = await http.post(
            meta["token_endpoint"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": first,
                "client_id": DEMO_CLIENT_ID,
            },
        )
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        # The legitimate holder's newer token died with the family.
        after = await http.post(
            meta["token_endpoint"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": rotated["refresh_token"],
                "client_id": DEMO_CLIENT_ID,
            },
        )
    assert after.json()["error"] == "invalid_grant"
    await client.aclose()


async def test_a_signatory_steps_up_to_substantial_with_totp(
    identity_dc1: RunningIdentity,
) -> None:
    # Logged in with a password only, the session is low...
    meta = await discover(identity_dc1.url)
    browser = Browser(identity_dc1.url)
    client = rp()
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    await browser.login(url, "signataire.merignac")
    # ...then the client asks for substantial: only the TOTP code is asked for.
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=verifier, acr_values=SUBSTANTIAL
    )
    page = await browser.authorize(url)
    assert 'name="code"' in page.text
    assert 'name="password"' not in page.text
    assert 'aria-live="assertive"' in page.text
    assert '<label for="code">' in page.text
    otp = pyotp.TOTP(demo_totp_secret("merignac")).now()
    answer = await browser.http.post(
        "/login/otp", data={"request": hidden_request_id(page.text), "code": otp}
    )
    assert answer.status_code == 303
    token = await client.fetch_token(
        meta["token_endpoint"],
        authorization_response=answer.headers["location"],
        code_verifier=verifier,
    )
    access = unverified_claims(token["access_token"])
    assert access["acr"] == SUBSTANTIAL
    assert access["amr"] == ["otp", "pwd"] or sorted(access["amr"]) == ["otp", "pwd"]
    assert "signatory" in access["roles"]
    await browser.aclose()
    await client.aclose()


async def test_client_credentials_introspection_and_revocation(
    identity_dc1: RunningIdentity,
) -> None:
    token = await service_token(identity_dc1)
    claims = unverified_claims(token)
    assert claims["kind"] == "service"
    assert claims["sub"] == "svc-parapheur"
    assert (await introspect(identity_dc1, token))["active"] is True

    async with httpx.AsyncClient() as http:
        revoked = await http.post(
            f"{identity_dc1.url}/revoke",
            data={"token": token, "token_type_hint": "access_token"},
            auth=("svc-parapheur", service_client_secret("parapheur")),
        )
    assert revoked.status_code == 200
    assert (await introspect(identity_dc1, token)) == {"active": False}


async def test_logout_ends_the_session_and_returns_to_the_registered_uri(
    identity_dc1: RunningIdentity,
) -> None:
    meta = await discover(identity_dc1.url)
    browser = Browser(identity_dc1.url)
    client = rp()
    url, _ = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=generate_token(48)
    )
    await browser.login(url, "lucas.bernard")
    out = await browser.http.get(
        "/logout",
        params={
            "client_id": DEMO_CLIENT_ID,
            "post_logout_redirect_uri": "http://127.0.0.1:8765/",
            "state": "bye",
        },
    )
    assert out.status_code == 303
    assert out.headers["location"] == "http://127.0.0.1:8765/?state=bye"
    # The session is gone: the next authorization shows the login form again.
    url, _ = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=generate_token(48)
    )
    again = await browser.authorize(url)
    assert again.status_code == 200
    assert 'name="password"' in again.text
    await browser.aclose()
    await client.aclose()


# -- refusals -----------------------------------------------------------------------------


async def _code_for(identity: RunningIdentity, verifier: str) -> str:
    meta = await discover(identity.url)
    client = rp()
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    browser = Browser(identity.url)
    location = await browser.login(url, "agent.pessac")
    await browser.aclose()
    await client.aclose()
    match = re.search(r"[?&]code=([^&]+)", location)
    assert match
    return match.group(1)


async def _exchange(identity: RunningIdentity, code: str, verifier: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{identity.url}/token",
            data={
                "grant_type": "authorization_code",
                "code": code,
                "code_verifier": verifier,
                "redirect_uri": DEMO_REDIRECT_URI,
                "client_id": DEMO_CLIENT_ID,
            },
        )


async def test_a_wrong_pkce_verifier_is_refused(identity_dc1: RunningIdentity) -> None:
    code = await _code_for(identity_dc1, generate_token(48))
    answer = await _exchange(identity_dc1, code, generate_token(48))
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"


async def test_a_code_is_exchanged_once_only(identity_dc1: RunningIdentity) -> None:
    verifier = generate_token(48)
    code = await _code_for(identity_dc1, verifier)
    first = await _exchange(identity_dc1, code, verifier)
    assert first.status_code == 200
    second = await _exchange(identity_dc1, code, verifier)
    assert second.status_code == 400
    assert second.json()["error"] == "invalid_grant"
    # The tokens of the first exchange lose their refresh family too.
    async with httpx.AsyncClient() as http:
        refresh = await http.post(
            f"{identity_dc1.url}/token",
            data={
                "grant_type": "refresh_token",
                "refresh_token": first.json()["refresh_token"],
                "client_id": DEMO_CLIENT_ID,
            },
        )
    assert refresh.json()["error"] == "invalid_grant"


async def test_unregistered_redirect_uri_and_missing_or_plain_pkce_are_refused(
    identity_dc1: RunningIdentity,
) -> None:
    async with httpx.AsyncClient(base_url=identity_dc1.url) as http:
        evil = await http.get(
            "/authorize",
            params={
                "response_type": "code",
                "client_id": DEMO_CLIENT_ID,
                "redirect_uri": "http://127.0.0.1:8765/callback/../evil",
                "code_challenge": "x" * 43,
                "code_challenge_method": "S256",
            },
        )
        assert evil.status_code == 400  # an error page, never a redirect to that URI
        assert "location" not in evil.headers
        for method in ("plain", None):
            params = {
                "response_type": "code",
                "client_id": DEMO_CLIENT_ID,
                "redirect_uri": DEMO_REDIRECT_URI,
                "state": "s1",
                "code_challenge": "x" * 43,
            }
            if method:
                params["code_challenge_method"] = method
            refused = await http.get("/authorize", params=params)
            assert refused.status_code == 303
            assert "error=invalid_request" in refused.headers["location"]
            assert "state=s1" in refused.headers["location"]


async def test_bad_tokens_are_refused_by_userinfo_and_inactive_in_introspection(
    identity_dc1: RunningIdentity,
) -> None:
    good = await service_token(identity_dc1)
    claims = unverified_claims(good)
    stranger = ECKey.generate_key("P-256", parameters={"kid": "unknown-kid"})
    unknown_kid = jose_jwt.encode(
        {"alg": "ES256", "kid": "unknown-kid", "typ": "at+jwt"}, claims, stranger
    )
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"at+jwt"}').rstrip(b"=").decode()
    alg_none = f"{header}.{good.split('.')[1]}."
    for bad in (unknown_kid, alg_none, "not-a-jwt", good[:-4] + "AAAA"):
        assert (await introspect(identity_dc1, bad)) == {"active": False}
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                f"{identity_dc1.url}/userinfo", headers={"Authorization": f"Bearer {bad}"}
            )
        assert answer.status_code == 401
        assert answer.json()["error"] == "invalid_token"


async def test_an_expired_or_wrongly_addressed_token_is_refused(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    import nats

    from identity.adapters.keys import KeyStore
    from identity.adapters.repository import Bucket

    from .conftest import KEY_SECRET

    nc = await nats.connect(servers=nats_cluster.client_urls)
    keys = KeyStore(Bucket(await nc.jetstream().key_value("identity_keys")), KEY_SECRET, 360)
    key = await keys.signing_key()
    await nc.close()
    now = int(time.time())
    base = {
        "iss": identity_dc1.issuer,
        "sub": "x",
        "client_id": "svc-parapheur",
        "scope": "openid",
        "tenant": "bordeaux",
        "kind": "service",
        "roles": [],
        "jti": secrets.token_hex(8),
    }
    header = {"alg": "ES256", "kid": key.kid, "typ": "at+jwt"}
    expired = jose_jwt.encode(
        header, {**base, "aud": ["mutualis:identity"], "iat": now - 900, "exp": now - 600}, key
    )
    wrong_aud = jose_jwt.encode(
        header, {**base, "aud": ["mutualis:archive"], "iat": now, "exp": now + 300}, key
    )
    async with httpx.AsyncClient() as http:
        for bad in (expired, wrong_aud):
            answer = await http.get(
                f"{identity_dc1.url}/me", headers={"Authorization": f"Bearer {bad}"}
            )
            assert answer.status_code == 401


@pytest.mark.parametrize(
    ("path", "data", "headers"),
    [
        ("/token", None, {}),
        ("/token", {"grant_type": "password"}, {}),
        ("/token", {"grant_type": "authorization_code", "client_id": DEMO_CLIENT_ID}, {}),
        ("/token", {"grant_type": "refresh_token", "client_id": "nobody"}, {}),
        ("/token", {"grant_type": "client_credentials"}, {"Authorization": "Basic !!!"}),
        ("/token", {"grant_type": "client_credentials", "client_id": DEMO_CLIENT_ID}, {}),
        ("/introspect", {"token": "x"}, {}),
        ("/revoke", {}, {"Authorization": "Basic " + base64.b64encode(b"svc-archive:no").decode()}),
    ],
)
async def test_malformed_requests_get_rfc6749_errors_not_500(
    identity_dc1: RunningIdentity, path: str, data: Any, headers: dict[str, str]
) -> None:
    async with httpx.AsyncClient() as http:
        if data is None:
            answer = await http.post(
                f"{identity_dc1.url}{path}",
                content=b"\xff{not json",
                headers={"Content-Type": "application/json"},
            )
        else:
            answer = await http.post(f"{identity_dc1.url}{path}", data=data, headers=headers)
    assert 400 <= answer.status_code < 500
    assert answer.json()["error"] in (
        "invalid_request",
        "unsupported_grant_type",
        "invalid_client",
        "unauthorized_client",
        "invalid_grant",
    )
    assert "error_description" in answer.json()


# -- admin API ----------------------------------------------------------------------------


async def test_a_tenant_admin_manages_its_own_tenant_and_not_another(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    started = datetime.now(UTC)
    tokens, _, _ = await code_flow(identity_dc1, "admin.talence")
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with httpx.AsyncClient(base_url=identity_dc1.url, headers=bearer) as http:
        created = await http.post(
            "/admin/tenants/talence/users",
            json={
                "username": "nouvel.agent.talence",
                "kind": "agent",
                "name": "Nouvel Agent",
                "password": "un-mot-de-passe-solide",
                "roles": ["agent"],
            },
        )
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        granted = await http.put(f"/admin/tenants/talence/users/{user_id}/roles/signatory")
        assert granted.json()["roles"] == ["agent", "signatory"]
        assert (await http.post(f"/admin/tenants/talence/users/{user_id}/disable")).json()[
            "disabled"
        ]
        client = await http.post(
            "/admin/tenants/talence/clients",
            json={
                "client_id": "talence-portail",
                "name": "Portail",
                "client_type": "confidential",
                "redirect_uris": ["https://portail.talence.example/callback"],
            },
        )
        assert client.status_code == 201
        assert client.json()["client_secret"]

        foreign = await http.post(
            "/admin/tenants/bordeaux/users",
            json={
                "username": "intrus",
                "kind": "agent",
                "name": "Intrus",
                "password": "un-mot-de-passe-solide",
            },
        )
        assert foreign.status_code == 403
        foreign_role = await http.put(f"/admin/tenants/bordeaux/users/{user_id}/roles/agent")
        assert foreign_role.status_code == 403

    # The audit trail names the administrator behind each change.
    import nats

    admin_id = unverified_claims(tokens["access_token"])["sub"]
    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        entries = await AuditReader(nc.jetstream()).entries("talence", started)
    finally:
        await nc.close()
    actors = {(e.action, e.object): e.actor for e in entries}
    assert actors[("identity.user.registered", user_id)] == admin_id
    assert actors[("identity.role.granted", user_id)] == admin_id
    assert actors[("identity.user.updated", user_id)] == admin_id
    assert actors[("identity.client.registered", "talence-portail")] == admin_id


async def test_a_citizen_exports_then_erases_their_account(identity_dc1: RunningIdentity) -> None:
    async with httpx.AsyncClient(base_url=identity_dc1.url) as http:
        admin, _, _ = await code_flow(identity_dc1, "admin.begles")
        created = await http.post(
            "/admin/tenants/begles/users",
            json={
                "username": "leo.durand",
                "kind": "citizen",
                "name": "Léo Durand",
                "password": "un-mot-de-passe-solide",
            },
            headers={"Authorization": f"Bearer {admin['access_token']}"},
        )
        assert created.status_code == 201, created.text
    meta = await discover(identity_dc1.url)
    client = rp()
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier)
    browser = Browser(identity_dc1.url)
    location = await browser.http.get(url)
    answer = await browser.http.post(
        "/login",
        data={
            "request": hidden_request_id(location.text),
            "username": "leo.durand",
            "password": "un-mot-de-passe-solide",
        },
    )
    tokens = await client.fetch_token(
        meta["token_endpoint"],
        authorization_response=answer.headers["location"],
        code_verifier=verifier,
    )
    bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
    async with httpx.AsyncClient(base_url=identity_dc1.url, headers=bearer) as http:
        export = await http.get("/me/export")
        assert export.json()["account"]["username"] == "leo.durand"
        assert "password_hash" not in json.dumps(export.json())
        assert (await http.delete("/me")).status_code == 204
        assert (await http.get("/me")).status_code == 404
    await browser.aclose()
    await client.aclose()


async def test_failed_logins_are_throttled_with_the_same_message(
    identity_dc1: RunningIdentity,
) -> None:
    meta = await discover(identity_dc1.url)
    client = rp()
    browser = Browser(identity_dc1.url)
    messages = set()
    for _ in range(6):
        url, _ = client.create_authorization_url(
            meta["authorization_endpoint"], code_verifier=generate_token(48)
        )
        page = await browser.authorize(url)
        answer = await browser.http.post(
            "/login",
            data={
                "request": hidden_request_id(page.text),
                "username": "archiviste.floirac",
                "password": "mauvais-mot-de-passe",
            },
        )
        assert answer.status_code == 400
        messages.add(re.search(r'<p class="erreur" id="erreur">([^<]+)</p>', answer.text).group(1))
    # Now even the right password is refused, with the same words as a wrong one.
    url, _ = client.create_authorization_url(
        meta["authorization_endpoint"], code_verifier=generate_token(48)
    )
    page = await browser.authorize(url)
    answer = await browser.http.post(
        "/login",
        data={
            "request": hidden_request_id(page.text),
            "username": "archiviste.floirac",
            "password": DEMO_PASSWORD,
        },
    )
    assert answer.status_code == 400
    messages.add(re.search(r'<p class="erreur" id="erreur">([^<]+)</p>', answer.text).group(1))
    assert len(messages) == 1
    await browser.aclose()
    await client.aclose()


# -- keys and datacenters -------------------------------------------------------------------


async def test_key_rotation_keeps_tokens_in_flight_valid(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    import nats

    from identity.adapters.keys import KeyStore
    from identity.adapters.repository import Bucket

    from .conftest import KEY_SECRET

    before = await service_token(identity_dc1)
    nc = await nats.connect(servers=nats_cluster.client_urls)
    keys = KeyStore(Bucket(await nc.jetstream().key_value("identity_keys")), KEY_SECRET, 360)
    new_kid = await keys.rotate()
    await nc.close()

    # Instances cache the signing key; the KV watch tells them about the rotation promptly.
    deadline = time.monotonic() + 10
    while True:
        after = await service_token(identity_dc1)
        kid = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"]
        if kid == new_kid or time.monotonic() > deadline:
            break
    assert kid == new_kid
    async with httpx.AsyncClient() as http:
        published = {k["kid"] for k in (await http.get(f"{identity_dc1.url}/jwks")).json()["keys"]}
    old_kid = json.loads(base64.urlsafe_b64decode(before.split(".")[0] + "=="))["kid"]
    assert {old_kid, new_kid} <= published
    assert (await introspect(identity_dc1, before))["active"] is True
    assert (await introspect(identity_dc1, after))["active"] is True


async def test_a_platform_admin_rotates_the_key_and_other_services_follow_through_the_jwks(
    identity_dc1: RunningIdentity,
) -> None:
    # A verifier of another service caches the JWKS; a token signed with a kid it has never
    # seen makes it fetch the set again (the kernel's `auth.TokenVerifier`, not our own code).
    verifier = TokenVerifier(identity_dc1.issuer, "mutualis:parapheur")
    before = await service_token(identity_dc1)
    assert (await verifier.verify(before)).tenant

    admin, _, _ = await code_flow(identity_dc1, "sre.metropole")
    agent, _, _ = await code_flow(identity_dc1, "admin.talence")
    async with httpx.AsyncClient(base_url=identity_dc1.url) as http:
        refused = await http.post(
            "/admin/signing-keys/rotate",
            headers={"Authorization": f"Bearer {agent['access_token']}"},
        )
        rotated = await http.post(
            "/admin/signing-keys/rotate",
            headers={"Authorization": f"Bearer {admin['access_token']}"},
        )
    assert refused.status_code == 403  # a tenant admin does not rotate the territory's key
    assert rotated.status_code == 200, rotated.text
    new_kid = rotated.json()["kid"]

    deadline = time.monotonic() + 10
    while True:
        after = await service_token(identity_dc1)
        kid = json.loads(base64.urlsafe_b64decode(after.split(".")[0] + "=="))["kid"]
        if kid == new_kid or time.monotonic() > deadline:
            break
    assert kid == new_kid
    assert (await verifier.verify(after)).subject == "svc-parapheur"
    assert (await verifier.verify(before)).subject == "svc-parapheur"  # still in the JWKS


async def test_instances_rotating_at_once_make_one_rotation_and_a_young_key_is_kept(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    import nats

    from identity.adapters.keys import CURRENT, KeyStore
    from identity.adapters.repository import Bucket

    from .conftest import KEY_SECRET

    nc = await nats.connect(servers=nats_cluster.client_urls)
    try:
        bucket = Bucket(await nc.jetstream().key_value("identity_keys"))
        instances = [KeyStore(bucket, KEY_SECRET, 360) for _ in range(3)]
        keys_before = await instances[0]._key_names()
        # Every instance finds the key over its age at the same moment: one rotates.
        kids = await asyncio.gather(*(k.rotate_if_older_than(0) for k in instances))
        winners = [kid for kid in kids if kid is not None]
        assert len(winners) == 1
        current = await bucket.get(CURRENT)
        assert current is not None
        assert current[0]["kid"] == winners[0]
        assert len(await instances[0]._key_names()) == len(keys_before) + 1  # no orphan key
        # A key younger than the maximum age is left alone.
        assert await instances[1].rotate_if_older_than(3600) is None
    finally:
        await nc.close()


@pytest.mark.slow
async def test_an_instance_in_another_datacenter_serves_the_same_users(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    dc2 = start_identity(nats_cluster.urls_for("dc2"), identity_dc1.issuer, "dc2")
    try:
        issued_in_dc1 = await service_token(identity_dc1)
        assert (await introspect(dc2, issued_in_dc1))["active"] is True
        tokens, _, _ = await code_flow(dc2, "agent.bruges")
        assert unverified_claims(tokens["access_token"])["tenant"] == "bruges"
        assert (await introspect(identity_dc1, tokens["access_token"]))["active"] is True
    finally:
        stop_identity(dc2)


async def test_an_instance_sees_failures_recorded_elsewhere_through_its_watch(
    identity_dc1: RunningIdentity, nats_cluster: Any
) -> None:
    """The throttling copy catches up with the bucket, then follows what others write."""
    import asyncio

    import nats

    from identity.adapters.throttle import FailureMirror

    key = f"cli.{secrets.token_hex(16)}"
    nc = await nats.connect(servers=nats_cluster.urls_for("dc2"))
    kv = await nc.jetstream().key_value("identity_throttle")
    mirror, stop = FailureMirror(kv, window_s=900), asyncio.Event()
    task = asyncio.create_task(mirror.watch(stop))

    async def until(condition: Any) -> bool:
        deadline = time.monotonic() + 10
        while not condition() and time.monotonic() < deadline:  # noqa: ASYNC110 - a plain attribute, polled with a deadline
            await asyncio.sleep(0.02)
        return bool(condition())

    try:
        assert await until(lambda: mirror.ready)
        assert mirror.recent(key) == []
        # Another instance (here: another connection) records two failures, then they expire.
        await kv.put(key, json.dumps({"timestamps": [1.0, 2.0]}).encode())
        assert await until(lambda: mirror.recent(key) == [1.0, 2.0])
        await kv.delete(key)
        assert await until(lambda: mirror.recent(key) == [])
    finally:
        stop.set()
        await task
        await nc.close()
