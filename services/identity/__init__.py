"""The identity service: the territory's OpenID Connect provider.

Owns citizens' and agents' accounts, roles, OAuth clients, signing keys, sessions and tokens,
all kept in JetStream (KV buckets, R3), and the `IDENTITY_EVENTS` stream of what happened to
them. Any instance in any datacenter serves every user: no state lives in the process.
"""
