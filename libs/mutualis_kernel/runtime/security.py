"""Least privilege on NATS: one nkey identity per service, permissions derived from manifests.

A service may publish only its own events (`evt.<service>.>`), dead letters of its own
consumers, and the JetStream API calls for the streams, buckets and consumers its manifest
declares; it subscribes only to its inboxes, the KV buckets it declares and the servers' news
of elected stream leaders (stream names only). So a compromised archive cannot forge a
parapheur event: the server refuses the publish. Operators (the `mutualis` CLI) connect as
`operator`, which may do everything.

Seeds are files (`<run dir>/nats/credentials/<user>.nk`, mode 0600), never code or values.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import nkeys

from mutualis_kernel.bus import deadletter
from mutualis_kernel.bus.connection import inbox_prefix
from mutualis_kernel.bus.leaders import LEADER_ELECTED_SUBJECT
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import DEAD_LETTER_STREAM, REPLAY_STREAM, Resources

OPERATOR = "operator"


@dataclass(frozen=True)
class NatsUser:
    name: str
    public_key: str
    seed_file: Path
    publish: tuple[str, ...] = (">",)
    subscribe: tuple[str, ...] = (">",)

    def render(self) -> str:
        def quoted(items: Sequence[str]) -> str:
            return ", ".join(f'"{item}"' for item in items)

        return (
            f'    {{ nkey: "{self.public_key}", permissions: {{ '
            f"publish: {{ allow: [{quoted(self.publish)}] }}, "
            f"subscribe: {{ allow: [{quoted(self.subscribe)}] }} }} }}"
        )


@dataclass(frozen=True)
class NatsSecurity:
    """Who may connect and do what; rendered into every server's `authorization` block."""

    users: tuple[NatsUser, ...] = field(default_factory=tuple)

    def render(self) -> str:
        lines = ["authorization {", "  users = ["]
        lines += [user.render() for user in self.users]
        lines += ["  ]", "}"]
        return "\n".join(lines) + "\n"

    def seed_for(self, name: str) -> Path:
        for user in self.users:
            if user.name == name:
                return user.seed_file
        raise KeyError(f"no NATS user {name!r}")


def ensure_seed(path: Path) -> str:
    """The public key of the user seed at `path`, creating the seed the first time."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        seed = nkeys.encode_seed(secrets.token_bytes(32), nkeys.PREFIX_BYTE_USER)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(seed)
    keypair = nkeys.from_seed(path.read_bytes().strip())
    public: bytes = keypair.public_key
    return public.decode()


def _stream_names(resources: Resources) -> list[str]:
    names = [s.name for s in resources.streams]
    names += [f"KV_{kv.bucket}" for kv in resources.key_values]
    names += [f"OBJ_{obj.bucket}" for obj in resources.object_stores]
    return names


def _read_only_stream_api(stream: str) -> list[str]:
    """Reading a stream: its info, messages, and ephemeral consumers (an object's chunks)."""
    api = "$JS.API"
    return [
        f"{api}.STREAM.INFO.{stream}",
        f"{api}.STREAM.MSG.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}",
        f"{api}.DIRECT.GET.{stream}.>",
        f"{api}.CONSUMER.CREATE.{stream}",
        f"{api}.CONSUMER.CREATE.{stream}.>",
        f"{api}.CONSUMER.INFO.{stream}.>",
        f"{api}.CONSUMER.DELETE.{stream}.>",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.>",
        f"$JS.FC.{stream}.>",
    ]


def _own_stream_api(stream: str) -> list[str]:
    """Reading it, and creating, updating and trimming it, with durable consumers."""
    api = "$JS.API"
    return [
        *_read_only_stream_api(stream),
        f"{api}.STREAM.CREATE.{stream}",
        f"{api}.STREAM.UPDATE.{stream}",
        f"{api}.STREAM.PURGE.{stream}",
        f"{api}.STREAM.MSG.DELETE.{stream}",
        f"{api}.CONSUMER.DURABLE.CREATE.{stream}.>",
        f"$JS.ACK.{stream}.>",
    ]


def _consumer_api(stream: str, durable: str, filters: tuple[str, ...]) -> list[str]:
    """Creating, binding to and acking one durable consumer.

    With one filter subject, creating the consumer is allowed only with that filter in the
    request subject (which the server checks against the consumer's configuration): a
    service cannot turn its consumer on another service's stream into a reader of more than
    its manifest declares. Several filters travel in the request body only, where no
    permission reaches: such consumers are confined to their stream and name.
    """
    api = "$JS.API"
    create = (
        [f"{api}.CONSUMER.CREATE.{stream}.{durable}.{filters[0]}"]
        if len(filters) == 1
        else [f"{api}.CONSUMER.CREATE.{stream}.{durable}"]
    )
    return [
        f"{api}.STREAM.INFO.{stream}",
        *create,
        f"{api}.CONSUMER.INFO.{stream}.{durable}",
        f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        f"$JS.ACK.{stream}.{durable}.>",
    ]


def service_permissions(manifest: ServiceManifest) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(publish allow, subscribe allow) for one service, from what its manifest declares."""
    resources = manifest.resources
    publish: list[str] = [f"evt.{manifest.name}.>", "$JS.API.INFO", *manifest.private_subjects]
    for stream in (*_stream_names(resources), *manifest.private_streams):
        publish += _own_stream_api(stream)
    for spec in resources.streams:
        publish += spec.subjects  # e.g. archive's journal and seals, beside its events
    for kv in resources.key_values:
        publish.append(f"$KV.{kv.bucket}.>")
    for obj in resources.object_stores:
        publish.append(f"$O.{obj.bucket}.>")
    if resources.object_stores or manifest.reads_object_stores:
        # nats-py's object `get` looks its stream up by subject (names only, no contents).
        publish.append("$JS.API.STREAM.NAMES")
    for bucket in manifest.reads_object_stores:
        publish += _read_only_stream_api(f"OBJ_{bucket}")
    # The kernel's own streams: services ensure them at start and write their dead letters.
    for stream in (DEAD_LETTER_STREAM, REPLAY_STREAM):
        publish += [f"$JS.API.STREAM.INFO.{stream}", f"$JS.API.STREAM.CREATE.{stream}"]
    for consumer in manifest.consumers:
        publish += _consumer_permissions(consumer)
    # Replies and pulled messages come to the service's own inbox prefix, not `_INBOX.>`:
    # another service cannot read them.
    subscribe = [f"{inbox_prefix(manifest.name)}.>"]
    subscribe += [f"$KV.{kv.bucket}.>" for kv in resources.key_values]
    # Which stream just got a leader (names only): the kernel's retries ask again at once.
    subscribe.append(LEADER_ELECTED_SUBJECT)
    return tuple(dict.fromkeys(publish)), tuple(subscribe)


def _consumer_permissions(consumer: ConsumerSpec) -> list[str]:
    replay_durable = deadletter.replay_durable(consumer.durable)
    return [
        *_consumer_api(consumer.stream, consumer.durable, consumer.filter_subjects),
        *_consumer_api(
            REPLAY_STREAM, replay_durable, (deadletter.replay_subject(consumer.durable),)
        ),
        deadletter.dead_letter_subject(consumer.durable),
    ]


def build_security(
    credentials_dir: Path, manifests: Iterable[ServiceManifest], *, extra_users: Iterable[str] = ()
) -> NatsSecurity:
    """Seeds (created once, kept) and permissions for the operator and every service."""
    users = [
        NatsUser(
            OPERATOR,
            ensure_seed(credentials_dir / f"{OPERATOR}.nk"),
            credentials_dir / f"{OPERATOR}.nk",
        )
    ]
    for name in extra_users:
        seed = credentials_dir / f"{name}.nk"
        users.append(NatsUser(name, ensure_seed(seed), seed))
    for manifest in manifests:
        seed = credentials_dir / f"{manifest.name}.nk"
        publish, subscribe = service_permissions(manifest)
        users.append(NatsUser(manifest.name, ensure_seed(seed), seed, publish, subscribe))
    return NatsSecurity(tuple(users))
