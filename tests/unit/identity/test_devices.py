"""What identifies a device for new-device alerts: the device cookie and browser families."""

from __future__ import annotations

from identity.domain.devices import MAX_DEVICES, UNKNOWN, KnownDevices, families, fingerprint

AGENTS = {
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0": ("Firefox", "Linux"),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36": ("Chrome", "Windows"),
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0": ("Edge", "Windows"),
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15": ("Safari", "macOS"),
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like "
    "Gecko) Version/18.1 Mobile/15E148 Safari/604.1": ("Safari", "iOS"),
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36": ("Chrome", "Android"),
    "python-httpx/0.28.1": (UNKNOWN, UNKNOWN),
}


def test_only_the_browser_and_os_families_are_read_from_the_user_agent() -> None:
    for agent, expected in AGENTS.items():
        assert families(agent) == expected, agent
    assert families(None) == (UNKNOWN, UNKNOWN)


def test_a_device_is_its_cookie_in_its_browser_family() -> None:
    home = fingerprint("cookie-1", "Firefox", "Linux")
    assert home == fingerprint("cookie-1", "Firefox", "Linux")
    assert home != fingerprint("cookie-2", "Firefox", "Linux")
    assert home != fingerprint("cookie-1", "Chrome", "Linux")  # a cookie carried elsewhere
    assert "cookie-1" not in home


def test_an_account_remembers_its_most_recently_seen_devices() -> None:
    known = KnownDevices()
    for day in range(MAX_DEVICES):
        known = known.sighted(f"device-{day}", day)
    assert known.knows("device-0")
    known = known.sighted("device-0", 100)  # seen again: now the most recent
    known = known.sighted("new", 101)
    assert len(known.seen) == MAX_DEVICES
    assert known.knows("new")
    assert known.knows("device-0")
    assert not known.knows("device-1")  # the least recently seen went
