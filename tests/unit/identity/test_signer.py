"""The token signer: compact ES256 JWS that any JOSE library accepts."""

from __future__ import annotations

import base64
import json

import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError
from joserfc.jwk import ECKey, KeySet

from identity.adapters.keys import Signer


def _key(kid: str) -> ECKey:
    return ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})


def _signer(key: ECKey) -> Signer:
    assert key.private_key is not None
    return Signer(str(key.kid), key.private_key)


def test_a_signed_token_verifies_with_the_published_key_and_keeps_every_claim() -> None:
    key = _key("k1")
    claims = {"sub": "u1", "name": "Inès Pétit", "roles": ["agent"], "exp": 2_000_000_000}
    token = _signer(key).sign(claims, typ="at+jwt")
    decoded = jwt.decode(token, KeySet([ECKey.import_key(key.as_dict(private=False))]))
    assert decoded.header == {"alg": "ES256", "kid": "k1", "typ": "at+jwt"}
    assert decoded.claims == claims


def test_the_signature_is_raw_r_and_s_as_jws_requires() -> None:
    key = _key("k1")
    token = _signer(key).sign({"sub": "u1"}, typ="JWT")
    signature = token.split(".")[2]
    assert len(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4))) == 64
    header = token.split(".")[0]
    assert json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))["typ"] == "JWT"


def test_a_token_signed_by_another_key_is_refused() -> None:
    token = _signer(_key("k1")).sign({"sub": "u1"}, typ="JWT")
    impostor = _key("k1")
    with pytest.raises(BadSignatureError):
        jwt.decode(token, KeySet([ECKey.import_key(impostor.as_dict(private=False))]))
