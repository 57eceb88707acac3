"""Adapters of the parapheur's ports on JetStream (event store, KV, object store) and signing."""
