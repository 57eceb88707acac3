"""Adapters: JetStream KV stores, SMTP relays, SMS gateways, tenant callbacks."""
