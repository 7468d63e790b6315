"""The addressing plan shared by every lab (see DESIGN.md). Only lab namespaces use it."""

from __future__ import annotations

import ipaddress

CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_CIDR = "10.96.0.0/12"
UNDERLAY_CIDR = "192.168.1.0/24"
UNDERLAY_GATEWAY = "192.168.1.1"
# A second node subnet behind the same router (lab 03: nodes that are not L2 neighbours).
UNDERLAY2_CIDR = "192.168.2.0/24"
UNDERLAY2_GATEWAY = "192.168.2.1"
CLIENT_CIDR = "203.0.113.0/24"
CLIENT_GATEWAY = "203.0.113.1"
CLIENT_IP = "203.0.113.10"
NODEPORT_RANGE = (30000, 32767)


def node_ip(n: int, subnet: int = 1) -> str:
    """Node N sits on the underlay at 192.168.1.(10+N) (192.168.2.(10+N) on subnet 2)."""
    return str(ipaddress.ip_network(underlay_cidr(subnet))[10 + n])


def underlay_cidr(subnet: int = 1) -> str:
    """The node network of subnet 1 (192.168.1.0/24) or 2 (192.168.2.0/24)."""
    return {1: UNDERLAY_CIDR, 2: UNDERLAY2_CIDR}[subnet]


def underlay_gateway(subnet: int = 1) -> str:
    """The router's address on that node subnet: every node's default gateway."""
    return {1: UNDERLAY_GATEWAY, 2: UNDERLAY2_GATEWAY}[subnet]


def pod_cidr(n: int) -> str:
    """Node N hands out pod addresses from 10.244.N.0/24 (flannel's and kubeadm's habit)."""
    return f"10.244.{n}.0/24"


def pod_gateway(n: int) -> str:
    """The first address of the node's pod range: the bridge plugin puts it on cni0."""
    return f"10.244.{n}.1"


def pod_ip(n: int, k: int) -> str:
    """The k-th pod (from 0) on node N gets 10.244.N.(2+k), after the gateway."""
    if not 0 <= k < 253:
        raise ValueError(f"pod index {k} does not fit in a /24")
    return f"10.244.{n}.{2 + k}"
