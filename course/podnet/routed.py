"""Pods on routes, no bridge: what Calico's CNI plugin builds on a node.

Each pod gets its own point-to-point cable to the node and nothing is shared at L2:

- In the pod: `eth0` holds the pod IP as a /32 (no other address is "on the wire"), plus
  `169.254.1.1 dev eth0 scope link` and `default via 169.254.1.1 dev eth0`. 169.254.1.1 is
  a made-up, link-local next hop that nobody owns.
- On the node: the veth's node end is `cali` + 11 hex digits, has no address, MAC
  `ee:ee:ee:ee:ee:ee`, and proxy ARP on, so the node answers the pod's "who has
  169.254.1.1?" with that MAC. A route `10.244.N.x dev caliXXXX scope link` per pod tells
  the node which cable leads to which pod, and forwarding moves packets between cables.

So pod-to-pod traffic on one node is *routed*: the receiver sees the node's veth MAC as
the source and a TTL one lower than the sender used. Compare `course.podnet.bridge`.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Node, Pod

GATEWAY = "169.254.1.1"
# Calico gives every host-side veth this MAC so the kernel never has to invent one; the
# pod only ever talks to "the node", so all cali* interfaces may share it.
HOST_VETH_MAC = "ee:ee:ee:ee:ee:ee"
K8S_NAMESPACE = "default"


def host_veth_name(pod_name: str, namespace: str = K8S_NAMESPACE) -> str:
    """`cali` + the first 11 hex digits of sha1("<namespace>.<pod>"), as Calico names them.

    Deterministic, so Felix (Calico's node agent) can find a pod's interface from the pod's
    name alone, and 15 characters, the kernel's limit for interface names.
    """
    digest = hashlib.sha1(f"{namespace}.{pod_name}".encode()).hexdigest()
    return f"cali{digest[:11]}"


def setup_node(node: Node) -> None:
    """Forwarding on, and a route that covers 169.254.1.1 (see `ensure_gateway_route`)."""
    node.ns.sysctl("net.ipv4.ip_forward", 1)
    ensure_gateway_route(node.ns)


def ensure_gateway_route(ns: Netns) -> None:
    """Linux answers proxy ARP only for addresses it has a unicast route to, out of another
    interface. On a real node the default route covers 169.254.1.1; a lab node with no
    uplink has none, and then every pod's ARP for its gateway goes unanswered (Calico
    issue #3270). Give such a node a host route for the gateway; packets are never
    actually sent to 169.254.1.1, the route only has to exist.
    """
    if ns.route_get(GATEWAY) is None:
        ns.up("lo")
        ns.add_route(f"{GATEWAY}/32", dev="lo")


def add_pod(node: Node, pod: Pod) -> None:
    """The plugin's ADD: veth pair, pod side addressed and routed, node side proxying."""
    host_if = host_veth_name(pod.name)
    node.ns.add_veth(host_if, pod.ns, "eth0")
    plumb_pod_side(pod.ns, pod.ip)
    plumb_host_side(node.ns, host_if, pod.ip)
    pod.host_ifname = host_if


def plumb_pod_side(ns: Netns, ip: str) -> None:
    """`ip addr add IP/32 dev eth0; ip route add 169.254.1.1 dev eth0 scope link;
    ip route add default via 169.254.1.1 dev eth0`."""
    ns.add_address("eth0", f"{ip}/32")
    ns.up("eth0")
    ns.add_route(f"{GATEWAY}/32", dev="eth0", scope="link")
    ns.add_route("0.0.0.0/0", via=GATEWAY, dev="eth0")


def plumb_host_side(ns: Netns, host_if: str, ip: str) -> None:
    """MAC, up, proxy ARP without delay, forwarding, and `ip route add IP dev caliX scope link`."""
    ns.set_mac(host_if, HOST_VETH_MAC)
    ns.up(host_if)
    ns.sysctl(f"net.ipv4.conf.{host_if}.proxy_arp", 1)
    ns.sysctl(f"net.ipv4.neigh.{host_if}.proxy_delay", 0)
    ns.sysctl(f"net.ipv4.conf.{host_if}.forwarding", 1)
    ns.add_route(f"{ip}/32", dev=host_if, scope="link")
