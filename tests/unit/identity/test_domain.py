"""The identity domain's rules, without any server."""

from __future__ import annotations

import time

import pyotp
import pytest

from identity.devseed import credentials, demo_totp_secret
from identity.domain.errors import InvalidCommand
from identity.domain.events import RoleGranted, UserErased, UserRegistered
from identity.domain.grants import (
    AuthorizationCode,
    FailureCount,
    RefreshFamily,
    RefreshToken,
    ThrottlePolicy,
    decide_refresh,
    is_throttled,
)
from identity.domain.model import LOA_LOW, LOA_SUBSTANTIAL, Client, User, acr_for
from identity.domain.security import (
    PasswordPolicy,
    Passwords,
    pkce_matches,
    pkce_s256,
    secret_digest,
    totp_timestep,
)


def test_passwords_use_argon2id_with_owasp_parameters() -> None:
    passwords = Passwords()
    stored = passwords.hash("correct horse battery")
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify(stored, "correct horse battery")
    assert not passwords.verify(stored, "wrong horse battery")
    assert not passwords.verify(None, "anything at all")
    with pytest.raises(ValueError, match="12"):
        passwords.hash("short")
    assert PasswordPolicy().memory_kib == 19 * 1024


def test_pkce_s256_matches_rfc7636_appendix_b() -> None:
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert pkce_s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier)
    assert not pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier[:-1] + "Y")
    assert not pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", None)


def test_a_totp_code_is_accepted_within_one_step_of_drift_only() -> None:
    secret = pyotp.random_base32()
    now = time.time()
    code = pyotp.TOTP(secret).at(now - 30)
    assert totp_timestep(secret, code, now) is not None
    assert totp_timestep(secret, pyotp.TOTP(secret).at(now - 120), now) is None
    assert totp_timestep(secret, "abc", now) is None


def test_a_second_factor_makes_the_session_substantial() -> None:
    assert acr_for(("pwd",)) == LOA_LOW
    assert acr_for(("pwd", "otp")) == LOA_SUBSTANTIAL


def test_registering_an_agent_records_the_event_and_roles_change_by_events() -> None:
    user = User.register(
        username="Agent.Bordeaux",
        kind="agent",
        tenant="bordeaux",
        email="a@example.org",
        name="Agent",
        password_hash="x",
        roles=("agent",),
    )
    assert user.username == "agent.bordeaux"
    user.grant("signatory", by="admin")
    user.grant("signatory", by="admin")  # granting twice changes nothing
    assert [type(e) for e in user.pending_events] == [UserRegistered, RoleGranted]
    with pytest.raises(InvalidCommand):
        user.grant("emperor")
    user.erase()
    erased = user.pending_events[-1]
    assert isinstance(erased, UserErased)
    assert "email" not in erased.model_dump()


def test_citizens_hold_no_roles() -> None:
    with pytest.raises(InvalidCommand):
        User.register(
            username="c",
            kind="citizen",
            tenant="pessac",
            email=None,
            name="C",
            password_hash="x",
            roles=("agent",),
        )


def test_redirect_uris_match_exactly_and_must_be_https_except_loopback() -> None:
    client = Client.register(
        client_id="portail",
        tenant="bordeaux",
        client_type="public",
        name="Portail",
        redirect_uris=["https://portail.example/cb", "http://127.0.0.1:8765/callback"],
    )
    assert client.redirect_uri_allowed("https://portail.example/cb")
    assert not client.redirect_uri_allowed("https://portail.example/cb/")
    assert not client.redirect_uri_allowed("https://portail.example/cb?x=1")
    with pytest.raises(InvalidCommand):
        Client.register(
            client_id="bad",
            tenant="bordeaux",
            client_type="public",
            name="Bad",
            redirect_uris=["http://portail.example/cb"],
        )
    with pytest.raises(InvalidCommand):
        Client.register(
            client_id="bad",
            tenant="bordeaux",
            client_type="public",
            name="Bad",
            redirect_uris=["https://x.example/cb"],
            grant_types=["client_credentials"],
        )


def test_a_used_refresh_token_presented_again_is_reuse() -> None:
    token = RefreshToken(
        family_id="f",
        client_id="c",
        user_id="u",
        scopes=["openid"],
        acr=LOA_LOW,
        amr=["pwd"],
        auth_time=0,
        expires_at=time.time() + 60,
    )
    family = RefreshFamily(family_id="f", user_id="u", client_id="c")
    assert decide_refresh(token, family, "c", time.time()) == "rotate"
    assert decide_refresh(token, family, "other", time.time()) == "wrong_client"
    token.status = "used"
    assert decide_refresh(token, family, "c", time.time()) == "reuse_detected"
    family.revoked = True
    assert decide_refresh(token, family, "c", time.time()) == "revoked"


def test_codes_live_sixty_seconds() -> None:
    code = AuthorizationCode(
        client_id="c",
        redirect_uri="https://x/cb",
        user_id="u",
        scopes=[],
        code_challenge="x",
        acr=LOA_LOW,
        amr=["pwd"],
        auth_time=0,
        issued_at=1000.0,
    )
    assert not code.expired(1059.0)
    assert code.expired(1061.0)


def test_throttling_counts_recent_failures_per_account_and_per_address() -> None:
    policy = ThrottlePolicy(per_account=3, per_address=5, window_s=60)
    account, address = FailureCount(), FailureCount()
    for _ in range(3):
        account.record(1000.0, 60)
    assert is_throttled(policy, account, address, 1001.0)
    assert not is_throttled(policy, account, address, 1100.0)  # the window has passed
    for _ in range(5):
        address.record(2000.0, 60)
    assert is_throttled(policy, FailureCount(), address, 2001.0)


def test_dev_credentials_cover_every_tenant_and_a_parapheur_circuit() -> None:
    rows = credentials()
    users = {r["username"]: r for r in rows if r["type"] == "user"}
    assert users["signataire.bordeaux"]["totp_secret"] == demo_totp_secret("bordeaux")
    assert "signatory" in users["signataire.bordeaux"]["roles"]
    assert "archivist" in users["archiviste.le-taillan-medoc"]["roles"]
    assert "tenant-admin" in users["admin.metropole"]["roles"]
    clients = {r["client_id"]: r for r in rows if r["type"] == "client"}
    assert clients["mutualis-demo"]["redirect_uris"] == ["http://127.0.0.1:8765/callback"]
    assert clients["svc-parapheur"]["client_secret"]
    assert secret_digest("a") != secret_digest("b")
