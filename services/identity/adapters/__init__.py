"""Adapters: JetStream KV repositories and the signing-key store."""
