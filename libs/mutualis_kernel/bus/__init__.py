"""The event bus over NATS JetStream: connect, publish, append, load, consume, dead-letter."""
