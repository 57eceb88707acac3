"""Free loopback ports for a whole `mutualis up`, for tests and benchmarks that start one.

Three NATS nodes need three consecutive client, monitoring and route ports; the services,
the dev TSA and the sinks are placed from one base, the TSA farthest (`wiring`).
"""

from __future__ import annotations

from mutualis_cli.wiring import TSA_PORT_OFFSET
from mutualis_kernel.testing.ports import free_port_block

#: Ports from --port-base-services that `up` may use: every service (and --ha's +10, +20),
#: the sinks, up to the TSA.
SERVICE_PORT_SPAN = TSA_PORT_OFFSET + 3


def free_up_options() -> list[str]:
    """`up` options placing every port of a three-datacenter platform on free ports."""
    return [
        "--nats-port",
        str(free_port_block(3)),
        "--nats-monitor-port",
        str(free_port_block(3)),
        "--nats-cluster-port",
        str(free_port_block(3)),
        "--port-base-services",
        str(free_port_block(SERVICE_PORT_SPAN)),
    ]
