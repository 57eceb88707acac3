"""The notifications service's configuration (environment prefix `MUTUALIS_`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from mutualis_kernel.config import KernelSettings


class NotificationsSettings(KernelSettings):
    service_name: str = "notifications"
    http_port: int = 8004
    # Primary and secondary SMTP relays (failover). Empty secondary: none.
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_secondary_host: str | None = None
    smtp_secondary_port: int = 25
    smtp_ca_file: str | None = Field(
        default=None, description="CA bundle trusted for STARTTLS (a dev CA in tests)."
    )
    smtp_timeout_s: float = 10.0
    #: Idle SMTP sessions kept open per relay between mails (0: a new connection per mail).
    smtp_pool_size: int = Field(default=4, ge=0)
    mail_from: str = "ne-pas-repondre@mutualis.example"
    # SMS gateways (generic JSON/HTTP), primary then secondary.
    sms_gateway_url: str = "http://127.0.0.1:8026/sms"
    sms_secondary_gateway_url: str | None = None
    sms_gateway_token: SecretStr | None = None
    #: Per request; past it, a gateway that got the request may have taken it (ambiguous).
    sms_timeout_s: float = Field(default=10.0, gt=0)
    # Delivery behaviour. A temporary failure after attempt n is tried again after
    # min(first_delay * factor^(n-1), max_delay) seconds, up to `max_attempts` attempts.
    max_attempts: int = Field(default=5, ge=1)
    retry_first_delay_s: float = Field(default=1.0, gt=0)
    retry_factor: float = Field(default=2.0, ge=1)
    retry_max_delay_s: float = Field(default=300.0, gt=0)
    #: How long a claimed attempt is presumed alive; past it, an entry still `sending` is
    #: claimed again if its hand-off never began, else settled without a second send (see
    #: docs/notifications.md). Keep it above the longest hand-off (SMTP timeout x 4).
    sending_lease_s: float = Field(default=60.0, gt=0)
    delivery_ack_wait_s: float = 15.0
    rate_per_s: float = 50.0
    rate_burst: float = 100.0
    callback_timeout_s: float = 5.0
    #: How long tenant settings, templates and routing rules are kept in memory; a change
    #: made through another instance applies within this delay.
    settings_cache_s: float = Field(default=2.0, ge=0)
