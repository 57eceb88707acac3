"""The pure core of notifications: no network, no files, no NATS, no FastAPI."""
