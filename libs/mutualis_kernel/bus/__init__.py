"""The event bus over NATS JetStream: connect, publish, append, load, consume, dead-letter."""

from mutualis_kernel.bus import nats_headers

nats_headers.install()
