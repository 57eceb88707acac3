"""What the identity service declares: its event stream and its KV buckets (no I/O here)."""

from __future__ import annotations

from mutualis_kernel.audit import AuditRule
from mutualis_kernel.bus.spec import ConsumerSpec
from mutualis_kernel.service import ServiceManifest
from mutualis_kernel.streams import KeyValueSpec, Resources, events_stream

USERS = "identity_users"
CLIENTS = "identity_clients"
KEYS = "identity_keys"
SESSIONS = "identity_sessions"
CODES = "identity_codes"
REFRESH = "identity_refresh"
THROTTLE = "identity_throttle"
REVOKED = "identity_revoked"
CREDENTIALS = "identity_credentials"
DEVICES = "identity_devices"

RESOURCES = Resources(
    streams=(
        events_stream(
            "identity", "Accounts, roles, clients and security events of the identity service."
        ),
    ),
    key_values=(
        KeyValueSpec(
            USERS, "Accounts by id and the username index (projected from events).", history=5
        ),
        KeyValueSpec(CLIENTS, "OAuth clients by client_id (projected from events).", history=5),
        KeyValueSpec(
            CREDENTIALS,
            "Password hashes, TOTP secrets and client secret digests (never in events).",
            history=1,
        ),
        KeyValueSpec(KEYS, "Signing keys (private part encrypted) and the current kid.", history=5),
        KeyValueSpec(SESSIONS, "Browser sessions by opaque id.", ttl_s=24 * 3600.0),
        KeyValueSpec(CODES, "Authorization codes by digest (60 s, single use).", ttl_s=300.0),
        KeyValueSpec(REFRESH, "Refresh tokens by digest and their families.", ttl_s=31 * 86400.0),
        KeyValueSpec(THROTTLE, "Recent login failures per account and address.", ttl_s=3600.0),
        KeyValueSpec(REVOKED, "Revoked access-token ids until they expire.", ttl_s=3600.0),
        KeyValueSpec(
            DEVICES,
            "Digests of the devices each account logged in from (new-device alerts); an "
            "account's list is forgotten 400 days after its last login.",
            ttl_s=400 * 86400.0,
        ),
    ),
)

PROJECTOR = ConsumerSpec(
    durable="identity-projector",
    stream="IDENTITY_EVENTS",
    # Accounts and clients only: security facts (logins) change no document, and a login
    # should not cost the projector a fetch, an ack and a write.
    filter_subjects=("evt.identity.*.user.>", "evt.identity.*.client.>"),
    service="identity",
    description="Folds account and client events into their KV projections.",
    backoff_s=(0.2, 1.0, 5.0, 15.0, 30.0),
    max_deliver=10,
    batch=128,
)

CONSUMERS = (PROJECTOR,)

MANIFEST = ServiceManifest(
    name="identity",
    description="The territory's OpenID Connect provider for citizens, agents and services.",
    default_port=8001,
    resources=RESOURCES,
    consumers=CONSUMERS,
    event_modules=("identity.domain.events",),
    audited=(
        # authentication
        AuditRule("identity", "login.succeeded", "login.succeeded", ("user_id",), ("client_id",)),
        AuditRule("identity", "login.failed", "login.failed", ("user_id",), ("reason",)),
        AuditRule("identity", "refresh.reused", "refresh.reused", ("user_id",), ("client_id",)),
        # administration
        AuditRule("identity", "user.registered", "user.registered", ("by",), ("user_id",)),
        AuditRule("identity", "user.updated", "user.updated", ("by",), ("user_id",)),
        AuditRule("identity", "user.erased", "user.erased", ("by",), ("user_id",)),
        AuditRule("identity", "role.granted", "role.granted", ("by",), ("user_id", "role")),
        AuditRule("identity", "role.revoked", "role.revoked", ("by",), ("user_id", "role")),
        AuditRule("identity", "client.registered", "client.registered", ("by",), ("client_id",)),
    ),
)
