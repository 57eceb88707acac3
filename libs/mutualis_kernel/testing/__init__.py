"""The test harness every service uses: real NATS clusters on free ports, torn down always.

Enable with `pytest_plugins = ["mutualis_kernel.testing.fixtures"]` in a conftest.
"""

from mutualis_kernel.testing.ports import free_port_block
from mutualis_kernel.testing.span_capture import SpanCapture

__all__ = ["SpanCapture", "free_port_block"]
