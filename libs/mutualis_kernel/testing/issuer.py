"""A stand-in token issuer for service tests (named so: it is not the identity service).

It holds real ES256 keys, serves a real JWKS over HTTP on a free loopback port, and mints
access tokens with the claims the identity service issues, so a service's tests exercise the
real `mutualis_kernel.auth` verification without starting identity. The identity service
itself, and the end-to-end tests, use the real provider.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from fastapi import FastAPI
from joserfc import jwt
from joserfc.jwk import ECKey

from mutualis_kernel.auth import LOA_LOW, LOA_SUBSTANTIAL, TokenVerifier
from mutualis_kernel.testing.ports import free_port_block


class TestIssuer:
    __test__ = False  # not a pytest test class

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port_block(1)
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex[:12]})
        self.retired: list[ECKey] = []
        #: How many times the JWKS was fetched (what a verifier's rate limit must bound).
        self.jwks_requests = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    def rotate(self) -> ECKey:
        """Sign with a new key from now on; the old one stays published, as identity does."""
        self.retired.append(self.key)
        self.key = ECKey.generate_key("P-256", parameters={"kid": uuid.uuid4().hex[:12]})
        return self.key

    def verifier(self, audience: str) -> TokenVerifier:
        return TokenVerifier(self.issuer, audience)

    def mint(
        self,
        sub: str,
        tenant: str,
        *,
        kind: str = "agent",
        roles: Iterable[str] = ("agent",),
        aud: Iterable[str] = (
            "mutualis:identity",
            "mutualis:parapheur",
            "mutualis:archive",
            "mutualis:notifications",
        ),
        acr: str | None = None,
        expires_in: int = 300,
        scope: str = "openid",
        client_id: str = "test-client",
        extra: dict[str, Any] | None = None,
        key: ECKey | None = None,
        header: dict[str, Any] | None = None,
    ) -> str:
        now = int(time.time())
        second_factor = acr == LOA_SUBSTANTIAL
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": sub,
            "aud": list(aud),
            "iat": now,
            "exp": now + expires_in,
            "jti": uuid.uuid4().hex,
            "client_id": client_id,
            "scope": scope,
            "tenant": tenant,
            "kind": kind,
            "roles": list(roles),
            "acr": acr or LOA_LOW,
            "amr": ["pwd", "otp"] if second_factor else ["pwd"],
        }
        claims.update(extra or {})
        signing_key = key or self.key
        jws_header = {"alg": "ES256", "kid": signing_key.kid, "typ": "at+jwt"}
        jws_header.update(header or {})
        return jwt.encode(jws_header, claims, signing_key)

    def bearer(self, *args: Any, **kwargs: Any) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.mint(*args, **kwargs)}"}

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/jwks")
        async def jwks() -> dict[str, Any]:
            self.jwks_requests += 1
            return {"keys": [k.as_dict(private=False) for k in (self.key, *self.retired)]}

        return app

    @asynccontextmanager
    async def running(self) -> AsyncIterator[TestIssuer]:
        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", log_config=None
        )
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve())
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        try:
            yield self
        finally:
            server.should_exit = True
            await task
