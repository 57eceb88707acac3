"""Settings shared by every service: NATS, datacenter, telemetry, dev mode, secrets policy.

Each service derives one settings class from `KernelSettings` (environment prefix
`MUTUALIS_`), so a service reads its whole configuration in one validated place.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

#: Values that must never protect a real deployment. A secret still equal to one of these
#: outside dev mode makes the settings refuse to load.
DEFAULT_SECRET_MARKERS = ("changeme", "dev-only", "")


class InsecureDefaultSecret(ValueError):
    pass


class KernelSettings(BaseSettings):
    """Configuration every Mutualis process shares."""

    model_config = SettingsConfigDict(
        env_prefix="MUTUALIS_", env_nested_delimiter="__", extra="ignore"
    )

    service_name: str = "mutualis"
    dev_mode: bool = Field(
        default=False,
        description="Development mode: allows default secrets and software fallbacks.",
    )
    datacenter: str = Field(default="dc1", description="Datacenter this instance runs in.")
    nats_urls: list[str] = Field(
        default_factory=lambda: ["nats://127.0.0.1:4222"],
        description="NATS servers, the local datacenter's node first.",
    )
    nats_credentials_file: str | None = None
    nats_nkey_seed_file: str | None = Field(
        default=None, description="This service's nkey seed, when NATS requires nkeys."
    )
    nats_tls_ca_file: str | None = None
    nats_connect_timeout_s: float = 2.0
    nats_ping_interval_s: float = Field(
        default=1.0,
        gt=0,
        description=(
            "How often to ping the server. A frozen server (a stalled VM, a partition) keeps "
            "its TCP connection open; only missed pongs reveal it and trigger the failover."
        ),
    )
    nats_max_outstanding_pings: int = Field(default=3, ge=1)
    publish_deadline_s: float = Field(
        default=15.0,
        gt=0,
        description="How long a publish keeps retrying through a leader election.",
    )
    stream_replicas: int = Field(default=3, ge=1, le=5)
    allowed_origins: list[str] = Field(
        default_factory=list,
        description=(
            "Browser origins allowed to call this API cross-origin (CORS); empty: no CORS "
            "headers at all, so browsers refuse every cross-origin call."
        ),
    )
    issuer_url: str = Field(
        default="http://127.0.0.1:8001",
        description="The OpenID Connect issuer whose access tokens this service accepts.",
    )
    jwks_url: str | None = Field(
        default=None,
        description=(
            "Where to fetch the issuer's signing keys when not <issuer_url>/jwks: identity's "
            "in-cluster address, say, while tokens name its public one."
        ),
    )
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description=(
            "How long an idle client connection stays open. Longer than the balancer's (60 s "
            "for most): a server closing first races the balancer's next request on it, which "
            "then fails without an answer."
        ),
    )
    http_body_idle_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description=(
            "How long a request body may stall between two of its chunks before the request "
            "is refused with 408: a client trickling a body (slowloris) holds no worker for "
            "longer. Header timeouts belong to the ingress in front."
        ),
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    drain_timeout_s: float = 10.0

    @model_validator(mode="after")
    def _refuse_default_secrets_outside_dev(self) -> KernelSettings:
        if self.dev_mode:
            return self
        for name, value in self._secret_fields():
            if value.get_secret_value() in DEFAULT_SECRET_MARKERS:
                raise InsecureDefaultSecret(
                    f"{name} still has its development default; set "
                    f"MUTUALIS_{name.upper()} or run with MUTUALIS_DEV_MODE=true"
                )
        return self

    def _secret_fields(self) -> list[tuple[str, SecretStr]]:
        found: list[tuple[str, SecretStr]] = []
        for name in type(self).model_fields:
            value: Any = getattr(self, name)
            if isinstance(value, SecretStr):
                found.append((name, value))
        return found
