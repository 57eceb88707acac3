"""The pure core of notifications: status machine, retries, preferences, rate limit, templates,
routing rules."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from notifications.domain.errors import (
    BodyTooLarge,
    InvalidAddress,
    InvalidRoutes,
    InvalidTransition,
    RenderFailed,
    TemplateInvalid,
)
from notifications.domain.model import (
    Notification,
    Preferences,
    RetryPolicy,
    TokenBucket,
    idempotency_key,
    normalise_email,
    normalise_phone,
    notification_id,
)
from notifications.domain.routing import (
    DEFAULT_ROUTES,
    desk_roles_for,
    effective_rule,
    parse_routes,
    user_ids_for,
    variables_for,
)
from notifications.domain.templates import (
    DEFAULT_TEMPLATES,
    Branding,
    Template,
    render,
    sms_encoding,
    sms_segments,
    validate_template,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def a_notification() -> Notification:
    return Notification(
        id="n1",
        tenant="bordeaux",
        kind="message",
        category="general",
        channel="email",
        cause_id="evt-1",
        address="a@example.org",
        created_at=NOW,
        updated_at=NOW,
    )


def test_the_same_cause_recipient_and_channel_name_the_same_notification() -> None:
    one = notification_id(idempotency_key("evt-1", "bordeaux/u1", "email"))
    assert one == notification_id(idempotency_key("evt-1", "bordeaux/u1", "email"))
    assert one != notification_id(idempotency_key("evt-1", "bordeaux/u1", "sms"))
    assert one != notification_id(idempotency_key("evt-2", "bordeaux/u1", "email"))


def test_a_notification_goes_from_created_through_sending_to_delivered() -> None:
    sending = a_notification().start_sending(NOW, timedelta(seconds=60), "smtp")
    assert sending.status == "sending"
    assert sending.attempt_count == 1
    assert not sending.lease_expired(NOW)
    assert sending.lease_expired(NOW + timedelta(seconds=61))
    delivered = sending.delivered(NOW, "smtp", "<m@x>")
    assert delivered.is_terminal


def test_temporary_failures_are_retried_and_terminal_states_do_not_move() -> None:
    n = a_notification().start_sending(NOW, timedelta(seconds=1), "smtp")
    n = n.failed(NOW, "421 busy", permanent=False)
    n = n.start_sending(NOW, timedelta(seconds=1), "smtp")
    assert n.attempt_count == 2
    n = n.failed(NOW, "550 no such user", permanent=True)
    with pytest.raises(InvalidTransition):
        n.start_sending(NOW, timedelta(seconds=1), "smtp")


def test_retry_policy_backs_off_exponentially_up_to_a_limit() -> None:
    policy = RetryPolicy(max_attempts=4, first_delay_s=1, factor=2, max_delay_s=3)
    assert policy.delays() == (1, 2, 3)
    assert not policy.gives_up_after(3)
    assert policy.gives_up_after(4)


def test_opt_out_is_respected_but_critical_messages_go_through() -> None:
    prefs = Preferences(opted_out={"workflow": ("email",)})
    assert not prefs.allows("workflow", "email", critical=False)
    assert prefs.allows("workflow", "inapp", critical=False)
    assert prefs.allows("workflow", "email", critical=True)


def test_the_token_bucket_delays_and_never_drops() -> None:
    bucket = TokenBucket(rate_per_s=2, capacity=2)
    assert bucket.take(100.0) == 0
    assert bucket.take(100.0) == 0
    wait = bucket.take(100.0)
    assert wait == pytest.approx(0.5)
    assert bucket.take(100.0 + wait) == 0


def test_addresses_are_checked_and_french_numbers_normalised() -> None:
    assert normalise_email("Marie@Bordeaux.FR") == "Marie@bordeaux.fr"
    assert normalise_phone("06 12 34 56 78") == "+33612345678"
    with pytest.raises(InvalidAddress):
        normalise_email("not-an-address")
    with pytest.raises(InvalidAddress):
        normalise_phone("12")


def test_sms_segments_depend_on_the_encoding() -> None:
    assert sms_encoding("Bonjour à tous") == "GSM-7"
    assert sms_segments("a" * 160) == 1
    assert sms_segments("a" * 161) == 2
    assert sms_encoding("Œuvre") == "UCS-2"
    assert sms_segments("Œ" * 70) == 1
    assert sms_segments("Œ" * 71) == 2
    assert sms_segments("€" * 80) == 1  # extension characters take two septets


def test_a_template_using_an_undeclared_variable_is_refused_when_saved() -> None:
    with pytest.raises(TemplateInvalid, match="unknown variables"):
        validate_template(Template(kind="x", variables=("a",), subject="{{ b }}", text="t"))
    with pytest.raises(TemplateInvalid):
        validate_template(Template(kind="x", subject="{% if %}", text="t"))


def test_the_sandbox_refuses_unsafe_attribute_access() -> None:
    template = Template(kind="x", variables=("a",), text="{{ a.__class__.__mro__ }}")
    with pytest.raises(TemplateInvalid):
        validate_template(template)


def test_rendering_is_strict_escapes_html_and_brands_the_commune() -> None:
    template = DEFAULT_TEMPLATES["message"]
    branding = Branding(name="Mérignac")
    with pytest.raises(RenderFailed):
        render(template, {"subject": "s"}, branding=branding)
    content = render(template, {"subject": "Objet", "body": "<b>x</b>"}, branding=branding)
    assert content.subject == "Objet"
    assert "&lt;b&gt;x&lt;/b&gt;" in (content.html or "")
    assert "<b>x</b>" in content.text
    assert "Mérignac" in content.text
    assert content.sms_segments >= 1


def test_an_oversize_sms_is_refused() -> None:
    template = DEFAULT_TEMPLATES["message"]
    with pytest.raises(BodyTooLarge):
        render(template, {"subject": "s", "body": "x" * 5000}, branding=Branding(name="B"))


def test_every_default_template_is_valid() -> None:
    for template in DEFAULT_TEMPLATES.values():
        validate_template(template)
    for rule in DEFAULT_ROUTES.rules:
        assert rule.kind in DEFAULT_TEMPLATES


def test_tenant_rules_override_the_territory_defaults() -> None:
    tenant = parse_routes(
        """
version: 2
rules:
  - event: mutualis.parapheur.step.assigned.v1
    kind: parapheur.step.assigned
    recipients: {users_from: [users]}
    enabled: false
"""
    )
    assert effective_rule("mutualis.parapheur.step.assigned.v1", DEFAULT_ROUTES, None)
    assert effective_rule("mutualis.parapheur.step.assigned.v1", DEFAULT_ROUTES, tenant) is None
    with pytest.raises(InvalidRoutes):
        parse_routes("version: 0\nrules: []")


def test_rules_extract_recipients_and_variables_from_the_payload() -> None:
    rule = DEFAULT_ROUTES.for_event("mutualis.parapheur.step.assigned.v1")
    assert rule is not None
    data = {"users": ["u1", "u2", "u1"], "step": 2}
    assert user_ids_for(rule, data, aggregate_id="f1") == ["u1", "u2"]
    assert variables_for(rule, data, tenant="bordeaux", aggregate_id="f1") == {
        "folder_id": "f1",
        "step": 2,
    }


def test_the_welcome_message_renders_for_an_account_registered_without_a_name() -> None:
    # identity.user.registered may carry no name: the welcome must not fail for want of one.
    welcome = DEFAULT_TEMPLATES["identity.welcome"]
    branding = Branding(name="Pessac")
    assert "Votre compte a été créé." in render(welcome, {}, branding=branding).text
    assert "créé, Ana." in render(welcome, {"name": "Ana"}, branding=branding).text


def test_steps_reminders_and_overdue_folders_name_their_desks_by_the_desk_role() -> None:
    data = {"users": ["u1"], "desks": ["secretariat", "finances", "secretariat"]}
    for event in ("step.assigned", "reminder.due", "folder.overdue"):
        rule = DEFAULT_ROUTES.for_event(f"mutualis.parapheur.{event}.v1")
        assert rule is not None
        assert user_ids_for(rule, data, aggregate_id="f1") == ["u1"]
        # The parapheur's convention: an agent holds desk X through the role desk:X.
        assert desk_roles_for(rule, data) == ("desk:secretariat", "desk:finances")
    completed = DEFAULT_ROUTES.for_event("mutualis.parapheur.folder.completed.v1")
    assert completed is not None
    assert desk_roles_for(completed, data) == ()


def test_a_claim_that_expired_before_its_hand_off_began_is_claimed_again() -> None:
    lease = timedelta(seconds=60)
    claimed = a_notification().start_sending(NOW, lease, "email")
    assert not claimed.hand_off_began
    later = NOW + timedelta(seconds=61)
    assert not claimed.can_be_reclaimed(NOW)  # still live: another instance waits
    assert claimed.claim_abandoned(later)
    again = claimed.start_sending(later, lease, "email")
    assert [a.outcome for a in again.attempts] == ["abandoned", "claimed"]
    assert again.attempt_count == 1  # nothing was sent by the abandoned claim


def test_a_hand_off_that_began_is_never_claimed_again_except_for_the_inbox() -> None:
    lease = timedelta(seconds=60)
    later = NOW + timedelta(seconds=61)
    begun = a_notification().start_sending(NOW, lease, "email").begin_hand_off(NOW, "smtp-a")
    assert begun.hand_off_began
    assert begun.attempts[-1].outcome == "handed-off"
    assert begun.hand_off_interrupted(later)
    assert not begun.can_be_reclaimed(later)
    with pytest.raises(InvalidTransition):
        begun.start_sending(later, lease, "email")
    with pytest.raises(InvalidTransition):
        begun.begin_hand_off(NOW, "smtp-b")
    # An inbox item is created under the notification's id: writing it again changes nothing.
    inbox = a_notification().model_copy(update={"channel": "inapp"})
    inbox = inbox.start_sending(NOW, lease, "inapp").begin_hand_off(NOW, "inbox")
    assert inbox.can_be_reclaimed(later)
    # Ledger entries from before the two steps (claim and hand-off were one) stay ambiguous.
    legacy = a_notification().start_sending(NOW, lease, "email")
    legacy = legacy.model_copy(
        update={"attempts": (legacy.attempts[0].model_copy(update={"outcome": "sent"}),)}
    )
    assert legacy.hand_off_interrupted(later)
    assert not legacy.can_be_reclaimed(later)


def test_settling_ends_the_hand_off_and_records_the_outcome() -> None:
    begun = (
        a_notification()
        .start_sending(NOW, timedelta(seconds=1), "email")
        .begin_hand_off(NOW, "smtp-a")
    )
    retry = begun.failed(NOW, "451 busy", permanent=False)
    assert retry.handing_off_since is None
    assert retry.attempts[-1].outcome == "failed"
    done = retry.start_sending(NOW, timedelta(seconds=1), "email").delivered(NOW, "smtp-b", None)
    assert [a.outcome for a in done.attempts] == ["failed", "delivered"]
    assert done.attempt_count == 2


def test_retry_delays_grow_by_the_factor_up_to_the_cap() -> None:
    policy = RetryPolicy(max_attempts=6, first_delay_s=0.3, factor=2, max_delay_s=1)
    assert [policy.delay_after(n) for n in range(1, 6)] == [0.3, 0.6, 1, 1, 1]


def test_a_new_device_login_is_a_critical_security_message_to_the_person() -> None:
    rule = DEFAULT_ROUTES.for_event("mutualis.identity.device.first_seen.v1")
    assert rule is not None
    assert (rule.category, rule.critical) == ("security", True)
    data = {"user_id": "u1", "browser": "unknown", "os": "Linux"}
    assert user_ids_for(rule, data, aggregate_id="u1") == ["u1"]
    content = render(
        DEFAULT_TEMPLATES[rule.kind],
        variables_for(rule, data, tenant="bordeaux", aggregate_id="u1"),
        branding=Branding(name="Bordeaux"),
    )
    assert "(navigateur inconnu sur Linux)" in content.text
