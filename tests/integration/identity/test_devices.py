"""New-device security events, from real logins: a browser (httpx with its own cookie jar and
User-Agent) through the real login pages of a real `python -m identity` on a real cluster."""

from __future__ import annotations

import pytest

from identity.devseed import DEMO_CLIENT_ID
from identity.domain.events import DeviceFirstSeen, LoginSucceeded
from mutualis_kernel.runtime import LocalCluster

from .conftest import RunningIdentity, browser, log_in, security_events

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

FIREFOX_LINUX = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36"
)
SAFARI_MAC = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.1 Safari/605.1.15"
)
TENANT, USERNAME = "merignac", "archiviste.merignac"


async def test_a_login_from_a_browser_the_account_never_used_is_a_security_event(
    identity_dc1: RunningIdentity, nats_cluster: LocalCluster
) -> None:
    home = browser(identity_dc1, FIREFOX_LINUX)
    user_id = await log_in(identity_dc1, home, USERNAME)
    device_cookie = home.cookies.get("mutualis_device")
    assert device_cookie is not None
    assert len(device_cookie) == 32
    await log_in(identity_dc1, home, USERNAME)  # the same browser again: known

    elsewhere = browser(identity_dc1, CHROME_WINDOWS)
    await log_in(identity_dc1, elsewhere, USERNAME)  # no device cookie: a new device
    # The device cookie carried into another browser family is not the known device either.
    copied = browser(identity_dc1, SAFARI_MAC)
    copied.cookies.set("mutualis_device", device_cookie, domain="127.0.0.1")
    await log_in(identity_dc1, copied, USERNAME)
    await log_in(identity_dc1, home, USERNAME)  # and the first browser is still known
    await log_in(identity_dc1, elsewhere, USERNAME)
    for http in (home, elsewhere, copied):
        await http.aclose()

    events = await security_events(nats_cluster, TENANT, user_id)
    assert sum(isinstance(e, LoginSucceeded) for e in events) == 6
    new_devices = [(e.browser, e.os) for e in events if isinstance(e, DeviceFirstSeen)]
    # The account's first device is recorded without an alert: nothing to compare it with.
    assert new_devices == [("Chrome", "Windows"), ("Safari", "macOS")]
    first_seen = next(e for e in events if isinstance(e, DeviceFirstSeen))
    assert first_seen.client_id == DEMO_CLIENT_ID
    assert first_seen.tenant == TENANT
    # Only the families travel: no User-Agent, no cookie.
    assert "537.36" not in first_seen.model_dump_json()
    assert device_cookie not in first_seen.model_dump_json()
