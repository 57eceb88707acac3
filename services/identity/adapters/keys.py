"""The signing keys: ES256 key pairs in the `identity_keys` KV bucket, shared by every instance.

Each key is stored under `key.<kid>` with its private JWK encrypted (JWE, `dir` + A256GCM,
key derived from `key_encryption_secret`), so a copy of the bucket alone cannot mint tokens.
`current` names the key that signs. Rotation writes a new key and moves `current`; the old
key stays published in the JWKS until every token it signed has expired.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from typing import Any

from joserfc import jwe
from joserfc.jwk import ECKey, OctKey
from nats.js.errors import NoKeysError

from identity.adapters.repository import Bucket
from identity.domain.errors import AlreadyExists

CURRENT = "current"


class KeyStore:
    def __init__(self, bucket: Bucket, encryption_secret: str, publish_after_retire_s: float):
        self.bucket = bucket
        self._wrap = OctKey.import_key(hashlib.sha256(encryption_secret.encode()).digest())
        self.publish_after_retire_s = publish_after_retire_s
        self._private: dict[str, ECKey] = {}

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
        """A new signing key; the previous one is retired but stays in the JWKS for a while."""
        previous = await self.bucket.get(CURRENT)
        kid = await self._store_new_key()
        if previous is not None:
            old_kid = str(previous[0]["kid"])
            old = await self.bucket.get(f"key.{old_kid}")
            if old is not None:
                old[0]["retired_at"] = time.time()
                await self.bucket.put(f"key.{old_kid}", old[0])
        await self.bucket.put(CURRENT, {"kid": kid})
        return kid

    async def signing_key(self) -> ECKey:
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
        try:
            # nats-py's `filters` is a substring match, so filter here (the bucket is tiny).
            names = await self.bucket.kv.keys()
        except NoKeysError:
            return []
        return sorted(n for n in names if n.startswith("key."))

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
