"""Free loopback ports for servers a test starts."""

from __future__ import annotations

import random
from collections import deque

from mutualis_kernel.runtime.process import port_is_free

#: Below Linux's ephemeral range (32768-60999), so client sockets never take our ports.
LOW, HIGH = 10000, 32000
#: Ports handed out recently are not handed out again (their server may still be stopping);
#: older ones are, or a long session would run out.
_recent: deque[int] = deque(maxlen=4000)


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports that are free now and not handed out recently.

    Randomised so parallel test sessions rarely collide. Late in a long session the small
    blocks handed out recently cut the range into gaps narrower than a large block (the
    platform's services need 320): then the older half of the recent ports is forgotten,
    their servers long stopped, and the search runs again.
    """
    for _ in range(4):
        base = _search(count, host)
        if base is not None:
            return base
        for _ in range(len(_recent) // 2):
            _recent.popleft()
    raise RuntimeError(f"no block of {count} free ports found")


def _search(count: int, host: str) -> int | None:
    rng = random.Random()  # noqa: S311 - spreading ports, not a secret
    recent = set(_recent)
    for _ in range(2000):
        base = rng.randrange(LOW, HIGH - count)
        block = range(base, base + count)
        if any(p in recent for p in block):
            continue
        if all(port_is_free(host, p) for p in block):
            _recent.extend(block)
            return base
    return None
