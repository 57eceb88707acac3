"""Repositories on JetStream KV: the only place identity state lives.

Every write that can race another instance is a compare-and-set on the key's revision, so two
datacenters never both consume the same code, rotate the same refresh token or create the
same username. Key names are digests or generated ids: nothing personal appears in a subject.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, TypeVar

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from identity import manifest
from identity.domain.errors import AlreadyExists, NotFound
from identity.domain.model import Client, User
from identity.domain.security import secret_digest

M = TypeVar("M", bound=BaseModel)


class StaleWrite(Exception):
    """Someone else changed the key since we read it."""


class Bucket:
    """JSON documents in one KV bucket, with revisions for compare-and-set."""

    def __init__(self, kv: KeyValue) -> None:
        self.kv = kv

    async def get(self, key: str) -> tuple[dict[str, Any], int] | None:
        try:
            entry = await self.kv.get(key)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return json.loads(entry.value), entry.revision or 0

    async def create(self, key: str, value: dict[str, Any]) -> int:
        try:
            return await self.kv.create(key, json.dumps(value).encode())
        except KeyWrongLastSequenceError:
            raise AlreadyExists(key) from None

    async def update(self, key: str, value: dict[str, Any], revision: int) -> int:
        try:
            return await self.kv.update(key, json.dumps(value).encode(), last=revision)
        except KeyWrongLastSequenceError:
            raise StaleWrite(key) from None

    async def put(self, key: str, value: dict[str, Any]) -> int:
        return await self.kv.put(key, json.dumps(value).encode())

    async def delete(self, key: str) -> None:
        await self.kv.delete(key)

    async def get_model(self, key: str, model: type[M]) -> tuple[M, int] | None:
        found = await self.get(key)
        if found is None:
            return None
        return model.model_validate(found[0]), found[1]


def _user_doc(user: User) -> dict[str, Any]:
    doc = dataclasses.asdict(user)
    doc.pop("pending_events")
    return doc


def _client_doc(client: Client) -> dict[str, Any]:
    doc = dataclasses.asdict(client)
    doc.pop("pending_events")
    return doc


def username_key(username: str) -> str:
    return f"login.{secret_digest(username.strip().lower())}"


class UserRepository:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def get(self, user_id: str) -> tuple[User, int]:
        found = await self.bucket.get(f"user.{user_id}")
        if found is None:
            raise NotFound(f"no user {user_id}")
        return User(**found[0]), found[1]

    async def find(self, user_id: str) -> User | None:
        try:
            return (await self.get(user_id))[0]
        except NotFound:
            return None

    async def by_username(self, username: str) -> User | None:
        index = await self.bucket.get(username_key(username))
        if index is None:
            return None
        return await self.find(str(index[0]["user_id"]))

    async def add(self, user: User) -> None:
        # The index entry is the uniqueness check: create fails if the username is taken.
        await self.bucket.create(username_key(user.username), {"user_id": user.id})
        await self.bucket.create(f"user.{user.id}", _user_doc(user))

    async def save(self, user: User, revision: int) -> None:
        await self.bucket.update(f"user.{user.id}", _user_doc(user), revision)

    async def remove(self, user: User) -> None:
        await self.bucket.delete(f"user.{user.id}")
        await self.bucket.delete(username_key(user.username))


class ClientRepository:
    def __init__(self, bucket: Bucket) -> None:
        self.bucket = bucket

    async def find(self, client_id: str) -> Client | None:
        if not client_id or not _safe_key(client_id):
            return None
        found = await self.bucket.get(f"client.{client_id}")
        return Client(**found[0]) if found else None

    async def add(self, client: Client) -> None:
        await self.bucket.create(f"client.{client.client_id}", _client_doc(client))


def _safe_key(value: str) -> bool:
    return len(value) <= 128 and all(c.isalnum() or c in "-_" for c in value)


class Stores:
    """Every bucket identity uses, opened once by the composition root."""

    def __init__(self, buckets: dict[str, Bucket]) -> None:
        self.users = UserRepository(buckets[manifest.USERS])
        self.clients = ClientRepository(buckets[manifest.CLIENTS])
        self.keys = buckets[manifest.KEYS]
        self.sessions = buckets[manifest.SESSIONS]
        self.codes = buckets[manifest.CODES]
        self.pending = buckets[manifest.PENDING]
        self.refresh = buckets[manifest.REFRESH]
        self.throttle = buckets[manifest.THROTTLE]
        self.revoked = buckets[manifest.REVOKED]

    @classmethod
    async def open(cls, js: JetStreamContext) -> Stores:
        names = [kv.bucket for kv in manifest.RESOURCES.key_values]
        return cls({name: Bucket(await js.key_value(name)) for name in names})
