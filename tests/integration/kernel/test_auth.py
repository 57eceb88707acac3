"""Services refuse every bad token through the kernel's verifier (with a stand-in issuer)."""

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey, OctKey

from mutualis_kernel.auth import (
    LOA_SUBSTANTIAL,
    AuthError,
    Principal,
    TokenVerifier,
    authenticated,
    require_tenant,
)
from mutualis_kernel.config import KernelSettings
from mutualis_kernel.testing.issuer import TestIssuer


def protected_app(issuer: TestIssuer) -> FastAPI:
    verifier = issuer.verifier("mutualis:parapheur")
    agent = authenticated(verifier, roles=("agent",), kinds=("agent", "service"))
    signatory = authenticated(verifier, roles=("signatory",), min_acr=LOA_SUBSTANTIAL)
    app = FastAPI()

    @app.get("/tenants/{tenant}/folders")
    async def folders(tenant: str, who: Annotated[Principal, Depends(agent)]) -> dict[str, str]:
        require_tenant(who, tenant)
        return {"tenant": tenant, "who": who.subject}

    @app.post("/sign")
    async def sign(who: Annotated[Principal, Depends(signatory)]) -> dict[str, str]:
        return {"signed_by": who.subject}

    return app


@pytest.fixture
async def client() -> AsyncIterator[tuple[httpx.AsyncClient, TestIssuer]]:
    issuer = TestIssuer()
    async with issuer.running():
        transport = httpx.ASGITransport(app=protected_app(issuer))
        async with httpx.AsyncClient(transport=transport, base_url="http://parapheur") as http:
            yield http, issuer


def unsigned(claims: dict[str, object]) -> str:
    def b64(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{b64({'alg': 'none', 'typ': 'at+jwt'})}.{b64(claims)}."


async def test_an_agent_of_the_tenant_gets_in(client: tuple[httpx.AsyncClient, TestIssuer]) -> None:
    http, issuer = client
    response = await http.get(
        "/tenants/bordeaux/folders", headers=issuer.bearer("agent-1", "bordeaux")
    )
    assert response.status_code == 200
    assert response.json() == {"tenant": "bordeaux", "who": "agent-1"}


async def test_no_token_is_a_401_with_a_bearer_challenge(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, _ = client
    response = await http.get("/tenants/bordeaux/folders")
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    ("variant", "reason"),
    [
        ("alg_none", "algorithm"),
        ("hmac", "algorithm"),
        ("unknown_key", "signature"),
        ("wrong_issuer", "issuer"),
        ("wrong_audience", "not meant for"),
        ("expired", "expired"),
        ("garbage", "JWT"),
    ],
)
async def test_bad_tokens_are_refused_with_401(
    client: tuple[httpx.AsyncClient, TestIssuer], variant: str, reason: str
) -> None:
    http, issuer = client
    good_claims = jwt.decode(issuer.mint("a", "bordeaux"), issuer.key).claims
    token = {
        "alg_none": lambda: unsigned(good_claims),
        "hmac": lambda: jwt.encode(
            {"alg": "HS256", "typ": "at+jwt"}, good_claims, OctKey.import_key(b"k" * 32)
        ),
        "unknown_key": lambda: issuer.mint(
            "a", "bordeaux", key=ECKey.generate_key("P-256", parameters={"kid": "rogue"})
        ),
        "wrong_issuer": lambda: issuer.mint("a", "bordeaux", extra={"iss": "https://evil"}),
        "wrong_audience": lambda: issuer.mint("a", "bordeaux", aud=["mutualis:archive"]),
        "expired": lambda: issuer.mint("a", "bordeaux", expires_in=-3600),
        "garbage": lambda: "not-a-token",
    }[variant]()
    response = await http.get(
        "/tenants/bordeaux/folders", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 401
    assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert reason in response.headers["www-authenticate"]


async def test_another_tenants_agent_is_refused_with_403(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, issuer = client
    response = await http.get(
        "/tenants/bordeaux/folders", headers=issuer.bearer("agent-2", "merignac")
    )
    assert response.status_code == 403
    assert "another tenant" in response.json()["detail"]


async def test_a_platform_admin_crosses_tenants(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, issuer = client
    headers = issuer.bearer("sre", "metropole", roles=("platform-admin",))
    assert (await http.get("/tenants/talence/folders", headers=headers)).status_code == 200


async def test_signing_needs_the_role_and_a_substantial_session(
    client: tuple[httpx.AsyncClient, TestIssuer],
) -> None:
    http, issuer = client
    plain_agent = await http.post("/sign", headers=issuer.bearer("a", "pessac"))
    assert plain_agent.status_code == 403
    low = await http.post("/sign", headers=issuer.bearer("s", "pessac", roles=("signatory",)))
    assert low.status_code == 403
    assert "insufficient_user_authentication" in low.headers["www-authenticate"]
    stepped_up = await http.post(
        "/sign", headers=issuer.bearer("s", "pessac", roles=("signatory",), acr=LOA_SUBSTANTIAL)
    )
    assert stepped_up.status_code == 200


async def test_a_key_rotated_just_after_the_last_fetch_is_accepted_without_a_refusal() -> None:
    # A verifier that fetched the JWKS a moment ago meets the first token of the issuer's new
    # key: it waits for its next allowed fetch rather than answer 401.
    issuer = TestIssuer()
    async with issuer.running():
        verifier = issuer.verifier("mutualis:parapheur")
        assert (await verifier.verify(issuer.mint("a1", "bordeaux"))).subject == "a1"
        issuer.rotate()
        assert (await verifier.verify(issuer.mint("a2", "bordeaux"))).subject == "a2"


async def test_a_flood_of_made_up_kids_fetches_the_issuer_keys_once_per_interval() -> None:
    issuer = TestIssuer()
    async with issuer.running():
        verifier = issuer.verifier("mutualis:parapheur")
        await verifier.verify(issuer.mint("a1", "bordeaux"))
        stranger = ECKey.generate_key("P-256", parameters={"kid": "made-up"})
        forged = [issuer.mint("x", "bordeaux", key=stranger) for _ in range(50)]
        outcomes = await asyncio.gather(
            *(verifier.verify(token) for token in forged), return_exceptions=True
        )
    assert all(isinstance(o, AuthError) and o.status == 401 for o in outcomes)
    assert issuer.jwks_requests <= 3  # the first fetch, then one per interval at most


async def test_keys_fetched_elsewhere_than_the_issuer_still_verify_its_tokens() -> None:
    # Tokens name the public issuer; the service fetches the keys from an in-cluster address.
    issuer = TestIssuer()
    async with issuer.running():
        settings = KernelSettings(
            issuer_url="https://login.example", jwks_url=f"{issuer.issuer}/jwks"
        )
        verifier = TokenVerifier.for_service(settings, "mutualis:parapheur")
        token = issuer.mint("a1", "bordeaux", extra={"iss": "https://login.example"})
        assert (await verifier.verify(token)).subject == "a1"
        stranger = issuer.mint("a2", "bordeaux")  # names the address the keys came from
        with pytest.raises(AuthError, match="wrong issuer"):
            await verifier.verify(stranger)
