"""The Mutualis shared kernel.

Owns what every service stands on: the event contract (CloudEvents over NATS), the subject
scheme, declarative JetStream resources, publishing and consuming with retries and dead
letters, telemetry, logging, settings, health and the test harness. It knows no service.
"""

__version__ = "0.1.0"
