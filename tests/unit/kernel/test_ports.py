"""Free port blocks for test servers, late in a long session too."""

from mutualis_kernel.testing import ports


def test_a_large_block_is_found_when_small_recent_blocks_fragment_the_range() -> None:
    # A long session hands out many small blocks (three NATS nodes at a time) at random.
    for _ in range(1300):
        ports.free_port_block(3)

    base = ports.free_port_block(320)

    assert ports.LOW <= base <= ports.HIGH - 320
