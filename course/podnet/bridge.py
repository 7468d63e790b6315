"""Pods on a bridge: what the CNI `bridge` plugin (and Docker's `docker0`) builds.

On the node: a bridge `cni0` holding the gateway address 10.244.N.1/24, and one veth per
pod whose node end is a port of the bridge. In the pod: `eth0` with an address from the
node's /24 and a default route via the gateway. Pods on one node are then on one L2
segment: frames between them are switched, so the receiver sees the sender's own MAC
and an unchanged TTL.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from course.addressing import pod_cidr, pod_gateway

if TYPE_CHECKING:
    from course.topology import Node, Pod

BRIDGE = "cni0"
# flannel's CNI config sets `"hairpinMode": true`: a pod must be able to reach itself
# through its own Service IP, which sends the frame back out of the port it came in on.
HAIRPIN_MODE = True


def host_veth_name(pod_ns_name: str, ifname: str = "eth0") -> str:
    """`veth` + 8 hex digits, like the bridge plugin's names (stable per pod here)."""
    digest = hashlib.sha1(f"{pod_ns_name}/{ifname}".encode()).hexdigest()
    return f"veth{digest[:8]}"


def setup_node(node: Node) -> None:
    """`ip link add cni0 type bridge; ip addr add 10.244.N.1/24 dev cni0; ip link set cni0 up`."""
    ns = node.ns
    ns.add_bridge(BRIDGE, up=True)
    prefixlen = pod_cidr(node.index).split("/")[1]
    ns.add_address(BRIDGE, f"{pod_gateway(node.index)}/{prefixlen}")
    ns.sysctl("net.ipv4.ip_forward", 1)


def add_pod(node: Node, pod: Pod) -> None:
    """The plugin's ADD: veth pair, node end into cni0, pod end named eth0 with its IP."""
    host_if = host_veth_name(pod.ns.name)
    node.ns.add_veth(host_if, pod.ns, "eth0", master=BRIDGE, up=True)
    if HAIRPIN_MODE:
        node.ns.bridge_port(host_if, hairpin=True)
    prefixlen = pod_cidr(node.index).split("/")[1]
    pod.ns.add_address("eth0", f"{pod.ip}/{prefixlen}")
    pod.ns.up("eth0")
    pod.ns.add_route("0.0.0.0/0", via=pod_gateway(node.index))
    pod.host_ifname = host_if
