"""flannel's `host-gw` backend: a static route to every other node's pod range, nothing else.

On node N, for every peer node M: `ip route add 10.244.M.0/24 via <node M's IP> dev eth0`
(flannel-io/flannel pkg/backend/hostgw/hostgw.go builds exactly this route, with the full
interface MTU: no header is added). The packet keeps the pod addresses on the wire; only the
Ethernet header changes at each node, and each node lowers the TTL by one.

What it needs: node M must be an L2 neighbour of node N. A next hop that is not on a
connected network cannot be a gateway: the kernel refuses the route ("Nexthop has invalid
gateway", ENETUNREACH), which flanneld logs as `Error adding route to ...` and retries.
This is what BGP automates (`course.podnet.bgp`), and what VXLAN avoids by needing only IP
reachability between nodes (`course.podnet.vxlan`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from course.kernel import KernelError

if TYPE_CHECKING:
    from course.topology import Cluster, Node


def add_route(node: Node, peer: Node) -> str | None:
    """`ip route add <peer pod range> via <peer IP>`; returns the kernel's refusal, if any.

    Like flanneld, a refused route is reported and skipped, not fatal: the other nodes
    still work, and the missing route is exactly what the learner should discover.
    """
    try:
        node.ns.add_route(peer.pod_cidr, via=peer.ip)
    except KernelError as exc:
        return f"Error adding route to {peer.pod_cidr} via {peer.ip} on {node.name}: {exc}"
    return None


def connect(cluster: Cluster) -> list[str]:
    """Every node gets a route to every other node's pods; returns the refused routes."""
    errors = []
    for node in cluster.nodes:
        node.ns.sysctl("net.ipv4.ip_forward", 1)
        for peer in cluster.nodes:
            if peer is not node:
                err = add_route(node, peer)
                if err:
                    errors.append(err)
    cluster.cross_node_errors = errors
    return errors
