"""The identity service's configuration (environment prefix `MUTUALIS_`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from mutualis_kernel.config import KernelSettings


class IdentitySettings(KernelSettings):
    service_name: str = "identity"
    http_port: int = 8001
    issuer: str = Field(
        default="http://127.0.0.1:8001",
        description="The issuer URL every instance shares (the public address, no trailing /).",
    )
    key_encryption_secret: SecretStr = Field(
        default=SecretStr("changeme"),
        description="Encrypts private signing keys at rest in the identity_keys KV bucket.",
    )
    signing_key_max_age_days: float = Field(
        default=90.0,
        ge=0,
        description=(
            "The signing key is rotated once it is this old (0: only on demand, POST "
            "/admin/signing-keys/rotate); the retired key stays in the JWKS until its tokens "
            "have expired."
        ),
    )
    signing_key_check_every_s: float = Field(default=3600.0, gt=0)
    access_token_ttl_s: int = 300
    id_token_ttl_s: int = 300
    refresh_token_ttl_s: int = 30 * 24 * 3600
    session_ttl_s: int = 12 * 3600
    #: argon2id cost; OWASP's values by default. Tests keep them unless told otherwise.
    argon2_memory_kib: int = 19 * 1024
    argon2_time_cost: int = 2
    argon2_parallelism: int = 1
    throttle_per_account: int = 5
    throttle_per_address: int = 20
    throttle_window_s: float = 900.0
    #: Force the Secure flag on the session cookie; defaults to "not in dev mode".
    secure_cookies: bool | None = None
