"""The signing keys: ES256 key pairs in the `identity_keys` KV bucket, shared by every instance.

Each key is stored under `key.<kid>` with its private JWK encrypted (JWE, `dir` + A256GCM,
key derived from `key_encryption_secret`), so a copy of the bucket alone cannot mint tokens.
`current` names the key that signs. Rotation writes a new key and moves `current`; the old
key stays published in the JWKS until every token it signed has expired.

Signing and verifying must not read the bucket every time: the current key (as a ready
`Signer`) and the public key set are cached in memory. A KV watch on the bucket drops the
cache as soon as any instance rotates; a short TTL bounds staleness should the watch be
down; and a token whose `kid` the cache does not know forces one reload (at most once a
second).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import time
from typing import Any

import nats.errors
import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc import jwe
from joserfc.jwk import ECKey, KeySet, OctKey

from identity.adapters.repository import Bucket, StaleWrite
from identity.domain.errors import AlreadyExists
from mutualis_kernel.bus.kv import scan

CURRENT = "current"
log = structlog.get_logger("identity.keys")
_ES256 = ec.ECDSA(hashes.SHA256())


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Signer:
    """Signs compact JWS with one ES256 key (RFC 7515/7518 §3.4), straight on `cryptography`.

    A token is the hot path of every grant: the private key object is imported once and the
    encoded header for each `typ` is kept, so a signature costs one JSON dump and one ECDSA.
    Verification stays with joserfc (`key_set`), which checks everything a reader must.
    """

    def __init__(self, kid: str, private_key: ec.EllipticCurvePrivateKey) -> None:
        self.kid = kid
        self._key = private_key
        self._headers: dict[str, str] = {}

    def sign(self, claims: dict[str, Any], *, typ: str) -> str:
        header = self._headers.get(typ)
        if header is None:
            header = _b64(
                json.dumps(
                    {"alg": "ES256", "kid": self.kid, "typ": typ}, separators=(",", ":")
                ).encode()
            )
            self._headers[typ] = header
        payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = f"{header}.{payload}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode("ascii"), _ES256))
        # JWS wants the raw 64-byte R || S, not the DER sequence cryptography returns.
        return f"{signing_input}.{_b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


class KeyStore:
    def __init__(
        self,
        bucket: Bucket,
        encryption_secret: str,
        publish_after_retire_s: float,
        cache_ttl_s: float = 30.0,
    ):
        self.bucket = bucket
        self._wrap = OctKey.import_key(hashlib.sha256(encryption_secret.encode()).digest())
        self.publish_after_retire_s = publish_after_retire_s
        self.cache_ttl_s = cache_ttl_s
        self._private: dict[str, ECKey] = {}
        self._signers: dict[str, Signer] = {}
        self._current: tuple[float, ECKey] | None = None
        self._current_signer: tuple[float, Signer] | None = None
        self._jwks: tuple[float, dict[str, Any], KeySet] | None = None
        self._last_forced = 0.0

    def invalidate(self) -> None:
        """Forget the cached current key and key set (a rotation happened somewhere)."""
        self._current = None
        self._current_signer = None
        self._jwks = None

    async def watch(self, stop: asyncio.Event) -> None:
        """Drop the cache whenever the key bucket changes, until `stop` is set."""
        while not stop.is_set():
            try:
                watcher = await self.bucket.kv.watchall()
            except (nats.errors.Error, TimeoutError) as error:
                log.warning("keys.watch_failed", error=repr(error))
                await _sleep_or_stop(stop, 1.0)
                continue
            try:
                while not stop.is_set():
                    try:
                        entry = await watcher.updates(timeout=1.0)  # type: ignore[no-untyped-call]
                    except (TimeoutError, nats.errors.TimeoutError):
                        continue
                    if entry is not None:
                        self.invalidate()
            except nats.errors.Error as error:
                log.warning("keys.watch_lost", error=repr(error))
            finally:
                with contextlib.suppress(nats.errors.Error, TimeoutError):
                    await watcher.stop()  # type: ignore[no-untyped-call]

    async def ensure_key(self) -> str:
        """The current kid, creating the first key if no instance has done it yet."""
        current = await self.bucket.get(CURRENT)
        if current is not None:
            return str(current[0]["kid"])
        kid = await self._store_new_key()
        try:
            await self.bucket.create(CURRENT, {"kid": kid})
        except AlreadyExists:
            # Another instance won the race; its key signs, ours is never used.
            await self.bucket.delete(f"key.{kid}")
        return await self.current_kid()

    async def current_kid(self) -> str:
        current = await self.bucket.get(CURRENT)
        if current is None:
            return await self.ensure_key()
        return str(current[0]["kid"])

    async def rotate(self) -> str:
        """A new signing key; the previous one is retired but stays in the JWKS for a while.

        Another instance rotating at the same moment wins or loses on `current`'s revision;
        the loser's key is dropped and the winner's returned, so one rotation happens."""
        previous = await self.bucket.get(CURRENT)
        try:
            return await self._rotate_from(previous)
        except StaleWrite:
            return await self.current_kid()

    async def rotate_if_older_than(self, max_age_s: float) -> str | None:
        """Rotate when the current key was made more than `max_age_s` ago; the new kid, or
        None when it is not due (or another instance has just rotated)."""
        current = await self.bucket.get(CURRENT)
        if current is None:
            return None
        key = await self.bucket.get(f"key.{current[0]['kid']}")
        if key is not None and time.time() - float(key[0].get("created_at") or 0) < max_age_s:
            return None
        try:
            return await self._rotate_from(current)
        except StaleWrite:
            return None

    async def rotate_periodically(
        self, max_age_s: float, stop: asyncio.Event, *, check_every_s: float = 3600.0
    ) -> None:
        """Keep the signing key younger than `max_age_s`, checking every `check_every_s`, until
        `stop`. Every instance runs it; compare-and-set on `current` makes one of them rotate."""
        while not stop.is_set():
            try:
                kid = await self.rotate_if_older_than(max_age_s)
            except (nats.errors.Error, TimeoutError, LookupError) as error:
                log.warning("keys.rotation_check_failed", error=repr(error))
            else:
                if kid is not None:
                    log.info("keys.rotated", kid=kid, reason="max age reached")
            await _sleep_or_stop(stop, check_every_s)

    async def _rotate_from(self, previous: tuple[dict[str, Any], int] | None) -> str:
        kid = await self._store_new_key()
        if previous is None:
            await self.bucket.put(CURRENT, {"kid": kid})
        else:
            try:
                await self.bucket.update(CURRENT, {"kid": kid}, previous[1])
            except StaleWrite:
                await self.bucket.delete(f"key.{kid}")  # never signed anything
                raise
            # Retired once no longer current: its tokens still verify until they expire.
            old_kid = str(previous[0]["kid"])
            old = await self.bucket.get(f"key.{old_kid}")
            if old is not None:
                old[0]["retired_at"] = time.time()
                await self.bucket.put(f"key.{old_kid}", old[0])
        self.invalidate()
        return kid

    async def signing_key(self) -> ECKey:
        cached = self._current
        if cached is not None and time.monotonic() - cached[0] < self.cache_ttl_s:
            return cached[1]
        key = await self._load_signing_key()
        self._current = (time.monotonic(), key)
        return key

    async def signer(self) -> Signer:
        """The current key, ready to sign (same cache and invalidation as `signing_key`)."""
        cached = self._current_signer
        if cached is not None and time.monotonic() - cached[0] < self.cache_ttl_s:
            return cached[1]
        key = await self.signing_key()
        signer = self._signers.get(key.kid or "")
        if signer is None:
            private = key.private_key
            if not isinstance(private, ec.EllipticCurvePrivateKey):
                raise LookupError(f"signing key {key.kid} has no private part")
            signer = Signer(str(key.kid), private)
            self._signers[str(key.kid)] = signer
        self._current_signer = (time.monotonic(), signer)
        return signer

    async def _load_signing_key(self) -> ECKey:
        kid = await self.current_kid()
        cached = self._private.get(kid)
        if cached is not None:
            return cached
        found = await self.bucket.get(f"key.{kid}")
        if found is None:
            raise LookupError(f"signing key {kid} is missing from the key bucket")
        plaintext = jwe.decrypt_compact(found[0]["private"], self._wrap).plaintext
        assert plaintext is not None
        key = ECKey.import_key(json.loads(plaintext))
        self._private[kid] = key
        return key

    async def public_jwks(self) -> dict[str, Any]:
        return (await self._published())[0]

    async def key_set(self, kid: str | None = None) -> KeySet:
        """The published keys, reloaded once if `kid` is not among them (a rotation the
        watch has not told us about yet)."""
        jwks, keys = await self._published()
        known = kid is None or any(k.get("kid") == kid for k in jwks["keys"])
        if not known and time.monotonic() - self._last_forced > 1.0:
            self._last_forced = time.monotonic()
            self._jwks = None
            jwks, keys = await self._published()
        return keys

    async def _published(self) -> tuple[dict[str, Any], KeySet]:
        cached = self._jwks
        if cached is not None and time.monotonic() - cached[0] < self.cache_ttl_s:
            return cached[1], cached[2]
        jwks = await self._load_jwks()
        keys = KeySet.import_key_set(jwks)  # type: ignore[arg-type]
        self._jwks = (time.monotonic(), jwks, keys)
        return jwks, keys

    async def _load_jwks(self) -> dict[str, Any]:
        now = time.time()
        keys = []
        for name in await self._key_names():
            found = await self.bucket.get(name)
            if found is None:
                continue
            retired_at = found[0].get("retired_at")
            if retired_at is not None and now > retired_at + self.publish_after_retire_s:
                continue
            keys.append(found[0]["public"])
        return {"keys": keys}

    async def _key_names(self) -> list[str]:
        return sorted([entry.key async for entry in scan(self.bucket.kv, "key.*")])

    async def _store_new_key(self) -> str:
        kid = f"{time.strftime('%Y%m%d')}-{secrets.token_hex(4)}"
        key = ECKey.generate_key("P-256", parameters={"kid": kid, "use": "sig", "alg": "ES256"})
        private = json.dumps(key.as_dict(private=True)).encode()
        wrapped = jwe.encrypt_compact({"alg": "dir", "enc": "A256GCM"}, private, self._wrap)
        await self.bucket.create(
            f"key.{kid}",
            {
                "kid": kid,
                "public": key.as_dict(private=False),
                "private": wrapped,
                "created_at": time.time(),
                "retired_at": None,
            },
        )
        return kid


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
