"""flannel's `vxlan` backend: pod packets wrapped in UDP between node IPs.

Every node gets one VXLAN device, `flannel.1`, built the way flanneld builds it
(flannel-io/flannel pkg/backend/vxlan/device.go `newVXLANDevice`, vxlan.go `RegisterNetwork`):

    ip link add flannel.1 type vxlan id 1 local <node IP> dev eth0 dstport 8472 nolearning
    ip link set flannel.1 mtu 1450            # eth0's MTU minus 50 bytes of headers
    ip addr add 10.244.N.0/32 dev flannel.1   # the node's pod range, network address
    ip link set flannel.1 up

- VNI 1: flannel's default network (so the device is `flannel.<VNI>`).
- dstport 8472: the port Linux used before IANA assigned 4789; flannel keeps the kernel's
  default. Both ends must agree, or the peer's kernel has no socket for the packet.
- nolearning: flanneld does not let the kernel learn where MACs live from incoming
  packets; it writes every entry itself from what other nodes publish (their node IP and
  `flannel.1` MAC, the `flannel.alpha.coreos.com/backend-data` node annotation).
- MTU 1450: the outer headers (IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14 = 50 bytes)
  must fit in eth0's 1500. flannel writes it to `/run/flannel/subnet.env` as FLANNEL_MTU
  and its CNI plugin gives pods, their veths and cni0 the same MTU.

Then, for every other node M, three entries, in this order (flannel-io/flannel
pkg/backend/vxlan/vxlan_network.go `handleSubnetEvents`, case `EventAdded`: `AddARP`,
`AddFDB`, then `RouteReplace`, "make sure this is done last" so the kernel never ARPs):

    ip neigh replace 10.244.M.0 lladdr <M's flannel.1 MAC> dev flannel.1 nud permanent
    bridge fdb replace <M's flannel.1 MAC> dev flannel.1 dst <M's node IP> self permanent
    ip route replace 10.244.M.0/24 via 10.244.M.0 dev flannel.1 onlink

The route sends pod traffic for node M into `flannel.1` towards the "gateway" 10.244.M.0;
the neighbour entry says which MAC that gateway has (no ARP on the overlay); the FDB entry
says which node IP that MAC lives behind, which becomes the outer destination. VXLAN only
needs the nodes to reach each other by IP, so it works across subnets and routers.

Pods on each node stay on that node's `cni0` bridge (`course.podnet.bridge`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Cluster, Node

DEVICE = "flannel.1"
VNI = 1
PORT = 8472
UNDERLAY_DEV = "eth0"
OVERHEAD = 50  # outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14


@dataclass(frozen=True)
class Lease:
    """What one node publishes for the others (flannel: the node's annotations)."""

    node: str
    public_ip: str  # flannel.alpha.coreos.com/public-ip
    subnet: str  # the node's podCIDR, 10.244.M.0/24
    vtep_mac: str  # backend-data {"VNI": 1, "VtepMAC": "..."}

    @property
    def gateway(self) -> str:
        """10.244.M.0: the network address, held by M's flannel.1 as a /32."""
        return self.subnet.split("/")[0]


def mtu_for(underlay_mtu: int) -> int:
    """FLANNEL_MTU: the underlay's MTU minus VXLAN's 50 bytes."""
    return underlay_mtu - OVERHEAD


def create_device(
    ns: Netns,
    local_ip: str,
    subnet: str,
    vni: int = VNI,
    port: int = PORT,
    dev: str = UNDERLAY_DEV,
    name: str = DEVICE,
) -> str:
    """`flannel.1` as flanneld makes it; returns its MAC (the VTEP MAC it publishes)."""
    mtu = mtu_for(ns.link(dev)["mtu"])
    ns.add_vxlan(name, vni=vni, local=local_ip, dev=dev, port=port, learning=False, mtu=mtu)
    ns.add_address(name, f"{subnet.split('/')[0]}/32")
    ns.up(name)
    return str(ns.link(name)["mac"])


def add_peer(ns: Netns, peer: Lease, name: str = DEVICE) -> None:
    """The three entries for one remote node, in flanneld's order: neighbour, FDB, route."""
    ns.add_neighbour(peer.gateway, peer.vtep_mac, name)
    ns.add_fdb(peer.vtep_mac, name, dst=peer.public_ip, replace=True)
    ns.add_route(peer.subnet, via=peer.gateway, dev=name, onlink=True)


def setup_node(node: Node) -> Lease:
    """Create the node's `flannel.1` and return the lease it publishes."""
    node.ns.sysctl("net.ipv4.ip_forward", 1)
    mac = create_device(node.ns, node.ip, node.pod_cidr)
    return Lease(node.name, node.ip, node.pod_cidr, mac)


def set_pod_mtu(node: Node, mtu: int) -> None:
    """What flannel's CNI plugin does with FLANNEL_MTU: cni0, every veth and every pod's eth0."""
    if node.ns.has_link("cni0"):
        node.ns.set_mtu("cni0", mtu)
    for pod in node.pods:
        if pod.host_ifname:
            node.ns.set_mtu(pod.host_ifname, mtu)
        pod.ns.set_mtu("eth0", mtu)


def connect(cluster: Cluster) -> list[Lease]:
    """flanneld on every node: its own device first, then the three entries per peer."""
    leases = [setup_node(node) for node in cluster.nodes]
    for node, own in zip(cluster.nodes, leases, strict=True):
        set_pod_mtu(node, node.ns.link(DEVICE)["mtu"])
        for lease in leases:
            if lease is not own:
                add_peer(node.ns, lease)
    return leases
