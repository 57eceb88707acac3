"""Devices an account logged in from, to tell a person when a login comes from a new one.

Pure computation (no I/O). What identifies a device, chosen to respect privacy:

- a **device cookie** (`mutualis_device`): a random id the provider sets on the browser at
  login, HttpOnly, kept 400 days (the longest browsers allow). It is derived from nothing
  about the person or the machine: no IP address, no screen, fonts or other fingerprinting;
- the **browser and OS families** read from the User-Agent (`Firefox`, `Windows`...), never
  its versions or the full string.

The device's fingerprint is SHA-256 over the three, and only that digest is stored, per
account, with the day it was last seen (at most `MAX_DEVICES`, the least recently seen
forgotten first; the bucket forgets an account's list 400 days after its last login, and
erasure deletes it). Neither the cookie nor the User-Agent is kept, and the digest alone
cannot be turned back into a cookie that would pass as a known device.

A login is from a *new device* when its fingerprint is not among the account's: a browser
without our cookie (another device, a private window, cookies cleared) or a cookie carried
into another browser family. The very first login of an account records its device without
an alert: there is nothing to compare it with, and the account's creation was already told
by the welcome message.
"""

from __future__ import annotations

import hashlib
import re

from pydantic import BaseModel, ConfigDict, Field

#: Devices remembered per account; beyond, the least recently seen is forgotten.
MAX_DEVICES = 20
DEVICE_COOKIE_MAX_AGE_S = 400 * 86400
UNKNOWN = "unknown"

# Order matters: Edge and Opera also say Chrome, Chrome also says Safari.
_BROWSERS = (
    ("Edge", re.compile(r"\bEdg(e|A|iOS)?/")),
    ("Opera", re.compile(r"\bOPR/|\bOpera\b")),
    ("Firefox", re.compile(r"\bFirefox/|\bFxiOS/")),
    ("Chrome", re.compile(r"\bChrome/|\bCriOS/|\bChromium/")),
    ("Safari", re.compile(r"\bVersion/[\d.]+.*\bSafari/")),
)
_SYSTEMS = (
    ("Android", re.compile(r"\bAndroid\b")),
    ("iOS", re.compile(r"\b(iPhone|iPad|iPod)\b")),
    ("Windows", re.compile(r"\bWindows\b")),
    ("macOS", re.compile(r"\bMac OS X\b|\bMacintosh\b")),
    ("ChromeOS", re.compile(r"\bCrOS\b")),
    ("Linux", re.compile(r"\bLinux\b")),
)


def families(user_agent: str | None) -> tuple[str, str]:
    """The browser and OS families of a User-Agent, or `unknown` (never a version)."""
    agent = (user_agent or "")[:512]
    browser = next((name for name, pattern in _BROWSERS if pattern.search(agent)), UNKNOWN)
    system = next((name for name, pattern in _SYSTEMS if pattern.search(agent)), UNKNOWN)
    return browser, system


def fingerprint(device_id: str, browser: str, system: str) -> str:
    return hashlib.sha256(f"mutualis-device|{device_id}|{browser}|{system}".encode()).hexdigest()


class KnownDevices(BaseModel):
    """An account's device fingerprints, each with the day (Unix days) it was last seen."""

    model_config = ConfigDict(frozen=True)

    seen: dict[str, int] = Field(default_factory=dict)

    def knows(self, device: str) -> bool:
        return device in self.seen

    def sighted(self, device: str, day: int) -> KnownDevices:
        seen = {**self.seen, device: day}
        others = sorted((d for d in seen if d != device), key=seen.__getitem__)
        for forgotten in others[: max(len(seen) - MAX_DEVICES, 0)]:
            del seen[forgotten]
        return KnownDevices(seen=seen)
