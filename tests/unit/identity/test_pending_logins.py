"""Logins in progress are sealed into the form, not stored: what a sealed token allows."""

from __future__ import annotations

import base64

from identity.adapters.pending import PASSWORD_CHECKED_TTL_S, REQUEST_TTL_S, PendingLogins

REQUEST = {"client_id": "mutualis-demo", "redirect_uri": "http://127.0.0.1:8765/callback"}


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def test_a_sealed_request_opens_on_any_instance_sharing_the_secret() -> None:
    token = PendingLogins("s3cret").seal(REQUEST)
    assert PendingLogins("s3cret").open(token) == (REQUEST, None)
    assert PendingLogins("another secret").open(token) is None


def test_the_page_shows_nothing_of_what_it_carries() -> None:
    token = PendingLogins("s3cret").seal(REQUEST, "u-42")
    shown = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    assert b"mutualis-demo" not in shown
    assert b"u-42" not in shown


def test_an_altered_token_is_refused_whatever_the_change() -> None:
    logins = PendingLogins("s3cret")
    token = logins.seal(REQUEST, "u-42")
    raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    for index in (0, 5, len(raw) // 2, len(raw) - 1):
        altered = bytearray(raw)
        altered[index] ^= 1
        forged = base64.urlsafe_b64encode(bytes(altered)).rstrip(b"=").decode()
        assert logins.open(forged) is None
    for garbage in ("", "not base64 !", "AAAA", "x" * 9000):
        assert logins.open(garbage) is None


def test_a_login_page_lasts_thirty_minutes_and_the_code_step_five() -> None:
    clock = Clock()
    logins = PendingLogins("s3cret", clock=clock)
    page = logins.seal(REQUEST)
    code_step = logins.seal(REQUEST, "u-42")
    clock.now += PASSWORD_CHECKED_TTL_S - 1
    assert logins.open(code_step) == (REQUEST, "u-42")
    clock.now += 2
    assert logins.open(code_step) is None  # the password must be given again
    assert logins.open(page) == (REQUEST, None)
    clock.now += REQUEST_TTL_S
    assert logins.open(page) is None


def test_another_instance_whose_clock_runs_a_little_ahead_is_believed() -> None:
    ahead, here = Clock(), Clock()
    ahead.now += 5
    token = PendingLogins("s3cret", clock=ahead).seal(REQUEST)
    assert PendingLogins("s3cret", clock=here).open(token) == (REQUEST, None)
