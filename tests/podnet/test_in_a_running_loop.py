"""Pod networks built from a thread that runs an asyncio loop, as every Jupyter cell does.

pyroute2's synchronous API cannot run inside a running event loop; course.kernel must route
its netlink calls around that, or no lab notebook could build anything.
"""

from __future__ import annotations

import asyncio

from course.topology import Cluster
from grader.probes import ping


def test_routed_cluster_builds_and_works_inside_a_running_loop():
    async def cell() -> tuple[bool, list[str]]:
        with Cluster("t-loop", nodes=1, pods_per_node=2, pod_network="routed") as c:
            a, b = c.pod("a"), c.pod("b")
            routes = [r["dst"] for r in c.node(1).ns.routes()]
            return ping(a.ns, b.ip).ok, routes

    ok, routes = asyncio.run(cell())
    assert ok
    assert {"10.244.1.2/32", "10.244.1.3/32"} <= set(routes)
