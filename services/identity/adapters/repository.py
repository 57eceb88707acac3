"""Repositories on JetStream KV: projections of the event stream, credentials, ephemeral state.

Accounts and clients are projections: documents folded from `IDENTITY_EVENTS`, each stamped
with the stream sequence of the last event folded in and written by compare-and-set, so
replays and races never move them backwards. Secrets and ephemeral security state (codes,
sessions, refresh tokens, throttling) live only here, also under compare-and-set, so two
datacenters never both consume the same code, rotate the same refresh token or claim the
same username. Key names are digests or generated ids: nothing personal appears in a subject.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import InvalidKeyError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from identity import manifest
from identity.domain.errors import AlreadyExists, NotFound
from identity.domain.model import Client, User
from identity.domain.security import secret_digest
from mutualis_kernel.bus.kv import PatientKeyValue
from mutualis_kernel.bus.publisher import PATIENT_ATTEMPT_S, with_retries

#: Reads and writes wait out a JetStream election (4.5-7 s) rather than fail; past this the
#: kernel answers 503 + Retry-After. A compare-and-set write retried after a lost ack
#: recognises its own bytes (see `Bucket._compare_and_set`).
KV_DEADLINE_S = 15.0

M = TypeVar("M", bound=BaseModel)
Doc = dict[str, Any]


class StaleWrite(Exception):
    """Someone else changed the key since we read it."""


class Bucket:
    """JSON documents in one KV bucket, with revisions for compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv
        self._patient = PatientKeyValue(kv, deadline_s=KV_DEADLINE_S)

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self._patient.get(key)
        except KeyNotFoundError:
            return None
        except InvalidKeyError:
            # A key NATS refuses (an id from a URL with odd characters) names nothing that
            # could have been stored: not found, rather than a 500.
            return None
        if entry.value is None:
            return None
        return json.loads(entry.value), entry.revision or 0

    async def create(self, key: str, value: dict[str, Any]) -> int:
        body = json.dumps(value).encode()
        written = await self._compare_and_set(key, body, lambda: self.kv.create(key, body))
        if written is None:
            raise AlreadyExists(key)
        return written

    async def update(self, key: str, value: dict[str, Any], revision: int) -> int:
        body = json.dumps(value).encode()
        written = await self._compare_and_set(
            key, body, lambda: self.kv.update(key, body, last=revision)
        )
        if written is None:
            raise StaleWrite(key)
        return written

    async def _compare_and_set(
        self, key: str, body: bytes, write: Callable[[], Awaitable[int]]
    ) -> int | None:
        """The new revision, or None when someone else's write came first.

        Retried through an election like any write; but an attempt whose ack was lost may
        have landed, and the retry would then be refused as if another writer had come first.
        So a refusal after a failed attempt looks at the key: holding exactly our bytes, it
        is our own write.
        """
        attempts = 0

        async def attempt() -> int | None:
            nonlocal attempts
            attempts += 1
            try:
                return await write()
            except KeyWrongLastSequenceError:
                if attempts > 1:
                    try:
                        current = await self.kv.get(key)
                    except KeyNotFoundError:
                        return None
                    if current.value == body and current.revision is not None:
                        return current.revision
                return None

        return await with_retries(
            attempt, KV_DEADLINE_S, f"write {key}", attempt_timeout_s=PATIENT_ATTEMPT_S
        )

    async def put(self, key: str, value: dict[str, Any]) -> int:
        return await self._patient.put(key, json.dumps(value).encode())

    async def delete(self, key: str) -> None:
        await self._patient.delete(key)

    async def get_model(self, key: str, model: type[M]) -> tuple[M, int] | None:
        found = await self.get(key)
        if found is None:
            return None
        return model.model_validate(found[0]), found[1]


Fold = Callable[[Doc | None], Doc | None]

#: How long a username or client id reservation may wait for its event before another
#: registration may take it over (a crash between the reservation and the append).
RESERVATION_GRACE_S = 30.0


async def project(bucket: Bucket, key: str, seq: int, fold: Fold) -> Doc | None:
    """Fold the event at stream sequence `seq` into the document at `key`, exactly once.

    A document that already saw `seq` (or a later event) is left alone; otherwise the new
    document, stamped with `seq`, is written by compare-and-set on the revision read, so the
    request that appended and the projector can both try without ever going backwards.
    Returns the document as it stands afterwards (None if there is none).
    """
    for _ in range(50):
        found = await bucket.get(key)
        doc, revision = found if found is not None else (None, None)
        if doc is not None and int(doc.get("seq", 0)) >= seq:
            return doc
        before = {k: v for k, v in doc.items() if k != "seq"} if doc is not None else None
        after = fold(before)
        if after is None:
            return None
        after = {**after, "seq": seq}
        try:
            if revision is None:
                await bucket.create(key, after)
            else:
                await bucket.update(key, after, revision)
            return after
        except (AlreadyExists, StaleWrite):
            continue  # someone else wrote in between: read again and decide again
    raise StaleWrite(key)


#: How many username -> account lookups an instance keeps (a few hundred KB).
USERNAMES_REMEMBERED = 10_000


def username_key(username: str) -> str:
    return f"login.{secret_digest(username.strip().lower())}"


class Credentials:
    """Secrets that never enter the event stream: password hashes, TOTP secrets and client
    secret digests (`identity_credentials`). Each entry is written before the event that
    makes it reachable; one whose event never came is unreachable and harmless."""

    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def user(self, user_id: str) -> Doc | None:
        found = await self.bucket.get(f"user.{user_id}")
        return found[0] if found else None

    async def client(self, client_id: str) -> tuple[Doc, int] | None:
        return await self.bucket.get(f"client.{client_id}")


def _joined(doc: Doc, secrets_: Doc | None) -> User | None:
    """The account from its projected document and its credentials (None without them)."""
    if secrets_ is None:
        return None
    fields = {k: v for k, v in doc.items() if k not in ("seq", "erased")}
    return User(
        **fields,
        password_hash=secrets_["password_hash"],
        totp_secret=secrets_.get("totp_secret"),
    )


class UserRepository:
    """Accounts as projected from the stream (`user.<id>`, `login.<digest>`), joined with
    their credentials on read."""

    def __init__(self, bucket: Bucket, credentials: Credentials) -> None:
        self.bucket = bucket
        self.credentials = credentials
        #: username key -> account id, as this instance last read it from the index, most
        #: recently used last (see `by_username`).
        self._user_ids: OrderedDict[str, str] = OrderedDict()

    async def doc(self, user_id: str) -> Doc | None:
        """The projected document, tombstones included, with its `seq`."""
        if not _safe_key(user_id):
            return None
        found = await self.bucket.get(f"user.{user_id}")
        return found[0] if found else None

    async def build(self, doc: Doc | None) -> User | None:
        if doc is None or doc.get("erased"):
            return None
        return _joined(doc, await self.credentials.user(str(doc["id"])))

    async def get(self, user_id: str) -> User:
        user = await self.find(user_id)
        if user is None:
            raise NotFound(f"no user {user_id}")
        return user

    async def find(self, user_id: str) -> User | None:
        if not _safe_key(user_id):
            return None
        # Both reads at once: every login waits for one round trip instead of two, and the
        # event loop wakes once for both answers (it shares its core with the hashing).
        doc, secrets_ = await asyncio.gather(self.doc(user_id), self.credentials.user(user_id))
        if doc is None or doc.get("erased"):
            return None
        return _joined(doc, secrets_)

    async def by_username(self, username: str) -> User | None:
        """The live account of that username, or None.

        While an account lives, the index never gives its name to another one: a name this
        instance has already looked up needs only its account read, one round trip instead
        of two per login. A remembered name whose account was erased or renamed since is
        caught by that read (the account is gone, or its name differs) and read afresh.
        """
        key = username_key(username)
        remembered = self._user_ids.get(key)
        if remembered is not None:
            user = await self.find(remembered)
            if user is not None and username_key(user.username) == key:
                self._user_ids.move_to_end(key)
                return user
            self._user_ids.pop(key, None)
        index = await self.bucket.get(key)
        if index is None:
            return None
        user_id = str(index[0]["user_id"])
        user = await self.find(user_id)
        if user is not None and username_key(user.username) == key:
            self._user_ids[key] = user_id
            while len(self._user_ids) > USERNAMES_REMEMBERED:
                self._user_ids.popitem(last=False)
        return user

    async def reserve_username(
        self, username: str, user_id: str, tenant: str, has_events: Callable[[str, str], Any]
    ) -> None:
        """Claim a username before appending its registration (uniqueness across aggregates).

        A reservation left by a crash (no event ever appended for it) is taken over after
        `RESERVATION_GRACE_S`; a confirmed entry (it has `seq`) is never taken.
        """
        key = username_key(username)
        claim = {"user_id": user_id, "tenant": tenant, "reserved_at": time.time()}
        try:
            await self.bucket.create(key, claim)
            return
        except AlreadyExists:
            pass
        found = await self.bucket.get(key)
        if found is None:
            raise AlreadyExists(key)  # deleted meanwhile; the caller may simply retry
        entry, revision = found
        orphan = (
            "seq" not in entry
            and time.time() - float(entry.get("reserved_at", 0)) > RESERVATION_GRACE_S
            and await self.doc(str(entry["user_id"])) is None
            and not await has_events(str(entry["tenant"]), str(entry["user_id"]))
        )
        if not orphan:
            raise AlreadyExists(key)
        try:
            await self.bucket.update(key, claim, revision)
        except StaleWrite:
            raise AlreadyExists(key) from None

    async def project(self, user_id: str, seq: int, fold: Fold) -> Doc | None:
        """Fold one event into the account document, then bring the username index in line."""
        doc = await project(self.bucket, f"user.{user_id}", seq, fold)
        if doc is not None:
            await self._index(doc)
        return doc

    async def _index(self, doc: Doc) -> None:
        if doc.get("erased"):
            key = f"login.{doc.get('username_digest')}"
            found = await self.bucket.get(key)
            if found is not None and found[0].get("user_id") == doc["id"]:
                await self.bucket.delete(key)
            return
        key = username_key(str(doc["username"]))
        confirmed = {"user_id": doc["id"], "tenant": doc["tenant"], "seq": doc["seq"]}
        for _ in range(10):
            found = await self.bucket.get(key)
            try:
                if found is None:
                    await self.bucket.create(key, confirmed)
                elif found[0].get("user_id") == doc["id"] and "seq" not in found[0]:
                    await self.bucket.update(key, confirmed, found[1])
                return  # confirmed already, or (never expected) another account's name
            except (AlreadyExists, StaleWrite):
                continue


class ClientRepository:
    """Clients as projected from the stream, joined with their secret digest.

    Every token request authenticates its client, so found clients are kept in memory for
    `cache_ttl_s` (a client registered once never changes today; when clients can be
    changed or disabled, their events must drop this cache, e.g. through a KV watch).
    """

    def __init__(self, bucket: Bucket, credentials: Credentials, cache_ttl_s: float = 10.0):
        self.bucket = bucket
        self.credentials = credentials
        self.cache_ttl_s = cache_ttl_s
        self._cache: dict[str, tuple[float, Client]] = {}

    async def doc(self, client_id: str) -> Doc | None:
        if not client_id or not _safe_key(client_id):
            return None
        found = await self.bucket.get(f"client.{client_id}")
        return found[0] if found else None

    async def find(self, client_id: str) -> Client | None:
        cached = self._cache.get(client_id)
        if cached is not None and time.monotonic() - cached[0] < self.cache_ttl_s:
            return dataclasses.replace(cached[1], pending_events=[])
        doc = await self.doc(client_id)
        if doc is None:
            return None
        secret = await self.credentials.client(client_id)
        fields = {k: v for k, v in doc.items() if k != "seq"}
        client = Client(**fields, secret_hash=secret[0].get("secret_hash") if secret else None)
        if len(self._cache) > 10_000:
            self._cache.clear()  # bounded: ids come from requests
        self._cache[client_id] = (time.monotonic(), client)
        return dataclasses.replace(client, pending_events=[])

    async def reserve(
        self,
        client_id: str,
        tenant: str,
        secret_hash: str | None,
        has_events: Callable[[str, str], Any],
    ) -> None:
        """Claim a client id (global across tenants) and store its secret digest, before the
        registration event; a claim whose event never came is taken over after a grace."""
        key = f"client.{client_id}"
        claim = {"tenant": tenant, "secret_hash": secret_hash, "reserved_at": time.time()}
        bucket = self.credentials.bucket
        try:
            await bucket.create(key, claim)
            return
        except AlreadyExists:
            pass
        found = await bucket.get(key)
        if found is None:
            raise AlreadyExists(key)
        entry, revision = found
        orphan = (
            time.time() - float(entry.get("reserved_at", 0)) > RESERVATION_GRACE_S
            and await self.doc(client_id) is None
            and not await has_events(str(entry["tenant"]), client_id)
        )
        if not orphan:
            raise AlreadyExists(key)
        try:
            await bucket.update(key, claim, revision)
        except StaleWrite:
            raise AlreadyExists(key) from None

    async def project(self, client_id: str, seq: int, fold: Fold) -> Doc | None:
        return await project(self.bucket, f"client.{client_id}", seq, fold)


def _safe_key(value: str) -> bool:
    return len(value) <= 128 and all(c.isalnum() or c in "-_" for c in value)


class Stores:
    """Every bucket identity uses, opened once by the composition root."""

    def __init__(self, buckets: dict[str, Bucket]) -> None:
        self.credentials = Credentials(buckets[manifest.CREDENTIALS])
        self.users = UserRepository(buckets[manifest.USERS], self.credentials)
        self.clients = ClientRepository(buckets[manifest.CLIENTS], self.credentials)
        self.keys = buckets[manifest.KEYS]
        self.sessions = buckets[manifest.SESSIONS]
        self.codes = buckets[manifest.CODES]
        self.refresh = buckets[manifest.REFRESH]
        self.throttle = buckets[manifest.THROTTLE]
        self.revoked = buckets[manifest.REVOKED]
        self.devices = buckets[manifest.DEVICES]

    @classmethod
    async def open(cls, js: JetStreamContext) -> Stores:
        names = [kv.bucket for kv in manifest.RESOURCES.key_values]
        return cls({name: Bucket(await js.key_value(name)) for name in names})
