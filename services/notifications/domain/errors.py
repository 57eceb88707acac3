"""Domain errors, translated to 4xx or to a permanent-failure status at the edges."""

from __future__ import annotations


class NotificationError(Exception):
    """Base of every refusal the domain makes; `code` is stable, `reason` is for humans."""

    code = "notification_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TemplateInvalid(NotificationError):
    code = "template_invalid"


class TemplateNotFound(NotificationError):
    code = "template_not_found"


class RenderFailed(NotificationError):
    """Rendering needed a variable that was not given, or the result broke a limit."""

    code = "render_failed"


class InvalidAddress(NotificationError):
    code = "invalid_address"


class InvalidRoutes(NotificationError):
    code = "invalid_routes"


class BodyTooLarge(NotificationError):
    code = "body_too_large"


class InvalidTransition(NotificationError):
    code = "invalid_transition"


class InvalidCallback(NotificationError):
    code = "invalid_callback"


class InvalidSettings(NotificationError):
    code = "invalid_settings"
