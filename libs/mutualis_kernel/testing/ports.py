"""Free loopback ports for servers a test starts."""

from __future__ import annotations

import random

from mutualis_kernel.runtime.process import port_is_free

_used: set[int] = set()


def free_port_block(count: int, host: str = "127.0.0.1") -> int:
    """The first of `count` consecutive ports that are free now and not handed out before.

    Randomised in the 20000-30000 range so parallel test sessions rarely collide.
    """
    rng = random.Random()  # noqa: S311 - spreading ports, not a secret
    for _ in range(500):
        base = rng.randrange(20000, 30000 - count)
        block = range(base, base + count)
        if any(p in _used for p in block):
            continue
        if all(port_is_free(host, p) for p in block):
            _used.update(block)
            return base
    raise RuntimeError(f"no block of {count} free ports found")
