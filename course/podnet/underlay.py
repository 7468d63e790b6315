"""Pods on the node network itself: what AWS's VPC CNI builds (the seed notes' "underlay").

In a VPC, an instance's network card (ENI) can hold secondary IP addresses, and the VPC
delivers packets for them to that instance: the cloud network itself knows where every pod
address lives. The VPC CNI hands those secondary addresses to pods, so a pod's address is a
node-network address, "consistent from the cluster and VPC perspective": no overlay, no
routes to exchange between nodes (aws/amazon-vpc-cni-k8s docs/cni-proposal.md).

Here the "VPC" is the underlay switch (and the router between node subnets), and a node's
"ENI secondary addresses" are proxy neighbour entries on its eth0:

    ip neigh add proxy 192.168.1.111 dev eth0      # "this node's ENI holds .111"

so when anyone on the node network asks ARP "who has 192.168.1.111?", node1 answers with
its own eth0 MAC and then forwards the packet to the pod. That is the analogy: the
underlay learns nothing from the cluster; each node answers for its pods' addresses, as
an ENI answers for its secondary IPs.

Inside a node, the plumbing is the VPC CNI's (cmd/routed-eni-cni-plugin/driver/driver.go):

- pod: `eth0` with the pod IP as /32, `169.254.1.1 dev eth0 scope link`, `default via
  169.254.1.1`, and a permanent ARP entry 169.254.1.1 -> the host veth's MAC (Calico uses
  proxy ARP on the host veth for the same purpose; `course.podnet.routed`).
- node: the host veth `eni` + 11 hex digits of sha1("<namespace>.<pod>"), and a route
  `<pod IP> dev eniXXXX scope link`. (The real plugin also adds policy rules per pod for
  secondary ENIs; with one ENI per node, the main table is all there is.)

The price: every pod consumes an address of the node network (a VPC subnet), and a node
can hold only as many pods as its ENIs have addresses (m5.large: 29 pods).
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Cluster, Node, Pod

GATEWAY = "169.254.1.1"
UNDERLAY_DEV = "eth0"
K8S_NAMESPACE = "default"
POD_HOST_BASE = 101  # node N's k-th pod: .(101 + 10 N + k) on the node's own subnet


def host_veth_name(pod_name: str, namespace: str = K8S_NAMESPACE) -> str:
    """`eni` + the first 11 hex digits of sha1("<namespace>.<pod>"), as the VPC CNI names it."""
    digest = hashlib.sha1(f"{namespace}.{pod_name}".encode()).hexdigest()
    return f"eni{digest[:11]}"


def pod_ip(node: Node, k: int) -> str:
    """A secondary address of the node's subnet: node1's pods .111, .112; node2's .121, ..."""
    if not 0 <= k < 9:
        raise ValueError("underlay pods: at most 9 per node (they use node-network addresses)")
    net = ipaddress.ip_network(f"{node.ip}/24", strict=False)
    return str(net[POD_HOST_BASE + 10 * node.index + k])


def setup_node(node: Node) -> None:
    """Forwarding on, and the node answers proxied ARP at once (no random delay)."""
    node.ns.sysctl("net.ipv4.ip_forward", 1)
    if node.ns.has_link(UNDERLAY_DEV):
        node.ns.sysctl(f"net.ipv4.neigh.{UNDERLAY_DEV}.proxy_delay", 0)


def add_pod(node: Node, pod: Pod) -> None:
    """The plugin's ADD: veth, pod side /32 + static gateway ARP, node side route + ENI entry."""
    host_if = host_veth_name(pod.name)
    node.ns.add_veth(host_if, pod.ns, "eth0", up=True)
    plumb_pod_side(pod.ns, pod.ip, node.ns.link(host_if)["mac"])
    node.ns.add_route(f"{pod.ip}/32", dev=host_if, scope="link")
    pod.host_ifname = host_if
    if node.ns.has_link(UNDERLAY_DEV):
        assign_to_eni(node.ns, pod.ip)


def plumb_pod_side(ns: Netns, ip: str, host_mac: str) -> None:
    """`ip addr add IP/32 dev eth0; ip neigh add 169.254.1.1 lladdr MAC nud permanent; routes`."""
    ns.add_address("eth0", f"{ip}/32")
    ns.up("eth0")
    ns.add_route(f"{GATEWAY}/32", dev="eth0", scope="link")
    ns.add_neighbour(GATEWAY, host_mac, "eth0")
    ns.add_route("0.0.0.0/0", via=GATEWAY, dev="eth0")


def assign_to_eni(ns: Netns, ip: str) -> None:
    """The cloud's part: the node network now delivers `ip` to this node (proxy ARP entry)."""
    ns.add_proxy_neighbour(ip, UNDERLAY_DEV)


def connect(cluster: Cluster) -> None:
    """Nothing to do between nodes: the underlay already knows every pod address."""


def new_pod(cluster: Cluster, node: Node, name: str, ip: str) -> Pod:
    """One more pod with a node-network address on a running cluster (`<node>-<name>`)."""
    from course.topology import Pod

    ns = cluster.netns(f"{node.name}-{name}")
    ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
    pod = Pod(name, node, ns, ip)
    setup_node(node)
    add_pod(node, pod)
    node.pods.append(pod)
    cluster.pods.append(pod)
    return pod
