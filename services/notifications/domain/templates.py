"""Templates: Jinja2 in a sandbox, French by default, checked when saved rather than when sent.

A `Template` belongs to a tenant and a notification kind. It declares the variables it expects;
saving refuses a template that uses any other (besides `commune` and `recipient`, always
given), that does not compile, or that fails a trial render. Rendering uses StrictUndefined,
so a variable missing at send time is a clear error, never an empty hole in a citizen's mail.
HTML bodies are autoescaped; text and SMS bodies are not.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import jinja2
from jinja2 import StrictUndefined, TemplateError, meta
from jinja2.sandbox import SandboxedEnvironment
from pydantic import BaseModel, ConfigDict, Field

from notifications.domain.errors import BodyTooLarge, RenderFailed, TemplateInvalid
from notifications.domain.model import Content

#: Variables every template may use without declaring them.
BUILTIN_VARIABLES = frozenset({"commune", "recipient"})
MAX_TEMPLATE_CHARS = 64 * 1024
MAX_EMAIL_BODY_CHARS = 256 * 1024
MAX_SMS_SEGMENTS = 10
MAX_INAPP_CHARS = 4000

# GSM 03.38 basic set, and the extension table whose characters take two septets.
_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")


def sms_encoding(text: str) -> str:
    return "GSM-7" if all(c in _GSM7_BASIC or c in _GSM7_EXTENDED for c in text) else "UCS-2"


def sms_segments(text: str) -> int:
    """How many SMS a text takes: 160/153 septets in GSM-7, 70/67 UTF-16 units in UCS-2."""
    if not text:
        return 0
    if sms_encoding(text) == "GSM-7":
        units = sum(2 if c in _GSM7_EXTENDED else 1 for c in text)
        single, multi = 160, 153
    else:
        units = len(text.encode("utf-16-le")) // 2
        single, multi = 70, 67
    return 1 if units <= single else -(-units // multi)


class Template(BaseModel):
    """The texts of one kind of notification for one tenant (or the territory's default)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,63}$")
    variables: tuple[str, ...] = ()
    subject: str = Field(default="", max_length=998)
    text: str = Field(default="", max_length=MAX_TEMPLATE_CHARS)
    html: str | None = Field(default=None, max_length=MAX_TEMPLATE_CHARS)
    sms: str = Field(default="", max_length=MAX_TEMPLATE_CHARS)
    version: int = 1


def _environment(*, autoescape: bool) -> SandboxedEnvironment:
    return SandboxedEnvironment(undefined=StrictUndefined, autoescape=autoescape)


_TEXT = _environment(autoescape=False)
_HTML = _environment(autoescape=True)


@lru_cache(maxsize=512)
def _compiled(source: str, autoescape: bool) -> jinja2.Template:
    """Compiling a template costs ~16 ms; a tenant's templates change rarely, so keep them."""
    return (_HTML if autoescape else _TEXT).from_string(source)


def _parts(template: Template) -> dict[str, tuple[str, SandboxedEnvironment]]:
    parts = {"subject": (template.subject, _TEXT), "text": (template.text, _TEXT)}
    parts["sms"] = (template.sms, _TEXT)
    if template.html is not None:
        parts["html"] = (template.html, _HTML)
    return parts


def validate_template(template: Template) -> Template:
    """Refuse, with the reason, a template that could fail when a message is due."""
    allowed = BUILTIN_VARIABLES | set(template.variables)
    for name, (source, env) in _parts(template).items():
        try:
            parsed = env.parse(source)
        except TemplateError as error:
            raise TemplateInvalid(f"{name}: {error}") from None
        unknown = meta.find_undeclared_variables(parsed) - allowed
        if unknown:
            raise TemplateInvalid(
                f"{name}: unknown variables {sorted(unknown)}; declare them in `variables`"
            )
    sample: dict[str, Any] = {name: f"<{name}>" for name in template.variables}
    try:
        render(template, sample, branding=Branding(name="Commune"), recipient={"name": "X"})
    except RenderFailed as error:
        raise TemplateInvalid(f"trial render failed: {error.reason}") from None
    return template


class Branding(BaseModel):
    """What makes a message look like it comes from its commune."""

    model_config = ConfigDict(frozen=True)

    name: str
    logo_url: str | None = None
    color: str = "#1f4e79"
    signature: str = ""


def render(
    template: Template,
    variables: dict[str, Any],
    *,
    branding: Branding,
    recipient: dict[str, Any] | None = None,
) -> Content:
    context = {**variables, "commune": branding.model_dump(), "recipient": recipient or {}}
    out: dict[str, str] = {}
    for name, (source, env) in _parts(template).items():
        try:
            out[name] = _compiled(source, env is _HTML).render(context)
        except TemplateError as error:
            raise RenderFailed(f"{template.kind}/{name}: {error}") from None
    if len(out["text"]) + len(out.get("html", "")) > MAX_EMAIL_BODY_CHARS:
        raise BodyTooLarge(f"{template.kind}: email body over {MAX_EMAIL_BODY_CHARS} characters")
    segments = sms_segments(out["sms"])
    if segments > MAX_SMS_SEGMENTS:
        raise BodyTooLarge(f"{template.kind}: SMS of {segments} segments (max {MAX_SMS_SEGMENTS})")
    subject = " ".join(out["subject"].split())  # no header injection through a variable
    return Content(
        subject=subject,
        text=out["text"],
        html=out.get("html"),
        sms=out["sms"],
        sms_segments=segments,
    )


_LAYOUT = (
    '<div style="font-family:sans-serif">'
    '<div style="border-bottom:4px solid {{ commune.color }};padding:8px">'
    '{% if commune.logo_url %}<img src="{{ commune.logo_url }}" alt="" height="40"> {% endif %}'
    '<strong>{{ commune.name }}</strong></div><div style="padding:8px">'
)
_LAYOUT_END = '</div><p style="color:#666">{{ commune.signature }}</p></div>'


def _default(kind: str, variables: tuple[str, ...], subject: str, body: str) -> Template:
    return Template(
        kind=kind,
        variables=variables,
        subject=subject,
        text=f"Bonjour,\n\n{body}\n\n-- {{{{ commune.name }}}}",
        html=f"{_LAYOUT}<p>Bonjour,</p><p>{body}</p>{_LAYOUT_END}",
        sms=f"{{{{ commune.name }}}} : {body}",
    )


#: The territory's templates, in French; a tenant overrides any kind by saving its own.
DEFAULT_TEMPLATES: dict[str, Template] = {
    t.kind: t
    for t in (
        _default(
            "parapheur.step.assigned",
            ("folder_id", "step"),
            "Un dossier attend votre action",
            "Le dossier {{ folder_id }} attend votre visa ou votre signature (étape {{ step }}).",
        ),
        _default(
            "parapheur.folder.completed",
            ("title", "folder_id"),
            "Dossier terminé : {{ title }}",
            "Le dossier « {{ title }} » ({{ folder_id }}) a terminé son circuit.",
        ),
        _default(
            "parapheur.folder.rejected",
            ("title", "folder_id", "reason"),
            "Dossier rejeté : {{ title }}",
            "Le dossier « {{ title }} » ({{ folder_id }}) a été rejeté : {{ reason }}",
        ),
        _default(
            "parapheur.reminder.due",
            ("folder_id", "due_at"),
            "Rappel : un dossier arrive à échéance",
            "Un dossier ({{ folder_id }}) arrive à échéance le {{ due_at }}.",
        ),
        _default(
            "parapheur.folder.overdue",
            ("folder_id", "due_at"),
            "Dossier en retard",
            "Le dossier {{ folder_id }} a dépassé son échéance ({{ due_at }}).",
        ),
        _default(
            "identity.welcome",
            ("name",),
            "Bienvenue sur les services de {{ commune.name }}",
            # `is defined` first: identity may register an account without a name, and
            # StrictUndefined refuses even to test a missing variable.
            "Votre compte a été créé{% if name is defined and name %}, {{ name }}{% endif %}.",
        ),
        _default(
            "identity.security.refresh-reused",
            ("client_id",),
            "Alerte de sécurité sur votre compte",
            "Une session de votre compte a été réutilisée de façon suspecte ; elle a été "
            "fermée. Si ce n'était pas vous, changez votre mot de passe.",
        ),
        _default(
            "identity.security.new-device",
            ("browser", "os"),
            "Connexion à votre compte depuis un nouvel appareil",
            # identity says `unknown` for a family it could not read.
            "Votre compte vient d'être utilisé depuis un appareil que nous ne connaissions "
            "pas ({{ 'navigateur inconnu' if browser == 'unknown' else browser }} sur "
            "{{ 'système inconnu' if os == 'unknown' else os }}). Si c'était vous, vous "
            "n'avez rien à faire. Sinon, changez votre mot de passe sans attendre.",
        ),
        _default(
            "archive.integrity.failed",
            ("reference", "reason"),
            "Archives : contrôle d'intégrité en échec",
            "Le contrôle d'intégrité de {{ reference }} a échoué : {{ reason }}",
        ),
        _default(
            "message",
            ("subject", "body"),
            "{{ subject }}",
            "{{ body }}",
        ),
    )
}
