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

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

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
    """`flannel.1` as flanneld makes it; returns its MAC (the VTEP MAC it publishes).

    Like flanneld's `ensureLink`, a device already there is kept when its VNI, local address
    and port match (a restarted flanneld, or a notebook cell run again), and replaced when
    they do not (the VNI and port of a VXLAN device cannot be changed in place).
    """
    mtu = mtu_for(ns.link(dev)["mtu"])
    info = device_info(ns, name)
    if info is not None and (info["kind"], info["vni"], info["local"], info["port"]) != (
        "vxlan",
        vni,
        local_ip,
        port,
    ):
        ns.delete_link(name)
        info = None
    if info is None:
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
    return connect_nodes(cluster.nodes)


def connect_nodes(nodes: list[Node], pod_mtu: bool = True) -> list[Lease]:
    """The overlay between `nodes` only (the others keep whatever they had)."""
    leases = [setup_node(node) for node in nodes]
    for node, own in zip(nodes, leases, strict=True):
        if pod_mtu:
            set_pod_mtu(node, node.ns.link(DEVICE)["mtu"])
        for lease in leases:
            if lease is not own:
                add_peer(node.ns, lease)
    return leases


def device_info(ns: Netns, name: str = DEVICE) -> dict[str, Any] | None:
    """`ip -d -j link show flannel.1`: vni, local, port, dev, learning, mtu, mac, up (or None)."""
    out = ns.run(["ip", "-d", "-j", "link", "show", name], check=False)
    if out.returncode != 0:
        return None
    link = json.loads(out.stdout)[0]
    info = link.get("linkinfo", {})
    data = info.get("info_data", {})
    return {
        "kind": info.get("info_kind"),
        "vni": data.get("id"),
        "local": data.get("local"),
        "port": data.get("port"),
        "dev": data.get("link"),
        "learning": data.get("learning"),
        "mtu": link.get("mtu"),
        "mac": link.get("address"),
        "up": "UP" in link.get("flags", []),
    }


def recreate(ns: Netns, vni: int | None = None, port: int | None = None) -> None:
    """Delete and re-add `flannel.1` with another VNI or port, keeping MAC and every entry.

    (A VXLAN device's id and port cannot be changed in place; flanneld recreates the
    device when its config changes.)
    """
    info = device_info(ns)
    assert info is not None, f"no {DEVICE} in {ns.name}"
    addresses = ns.addresses(DEVICE)
    neighbours = [n for n in ns.neighbours(DEVICE) if n["state"] & 0x80 and n["mac"]]
    fdb = [e for e in ns.fdb(DEVICE) if e["dst"]]
    routes = [r for r in ns.routes() if r["dev"] == DEVICE and r["gateway"]]
    ns.delete_link(DEVICE)
    ns.add_vxlan(
        DEVICE,
        vni=vni if vni is not None else info["vni"],
        local=info["local"],
        dev=info["dev"] or UNDERLAY_DEV,
        port=port if port is not None else info["port"],
        mtu=info["mtu"],
    )
    ns.set_mac(DEVICE, info["mac"])
    for cidr in addresses:
        ns.add_address(DEVICE, cidr)
    ns.up(DEVICE)
    for n in neighbours:
        ns.add_neighbour(n["ip"], n["mac"], DEVICE)
    for e in fdb:
        ns.add_fdb(e["mac"], DEVICE, dst=e["dst"], replace=True)
    for r in routes:
        ns.add_route(r["dst"], via=r["gateway"], dev=DEVICE, onlink=True)
