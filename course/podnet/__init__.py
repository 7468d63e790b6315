"""How a node connects its pods, and how nodes connect each other's pods.

Pod networks (one node), each with `setup_node` and `add_pod`:

- `bridge`: the CNI bridge plugin (and Docker): pods on a shared L2 segment, `cni0`.
- `routed`: Calico's style: no bridge, a /32 per pod, proxy ARP, one route per pod.
- `cni`: a kubelet-like step: each pod's network comes from a CNI runtime running a
  `.conflist` (the course bridge plugin + host-local by default).
- `underlay`: AWS VPC CNI's style: pods hold addresses of the node network itself.

Cross-node modes (pods on different nodes), each with `connect(cluster)`:

- `host-gw` (`hostgw`): a static route per peer node: `10.244.M.0/24 via <node M>`.
- `vxlan`: flannel's overlay: pod packets wrapped in UDP/8472 between node IPs.
- `bgp`: Calico's BIRD: every node announces its pod range to the others over iBGP.
- `underlay`: nothing to connect: the node network already delivers pod addresses.

`course.topology` picks modules by name, so adding a style means adding a module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STYLES = ("bridge", "routed", "cni", "underlay")

# Cross-node mode -> module, and the pod network each mode is built with in lab 03
# (flannel's pods sit on cni0, Calico's are routed, VPC CNI's take node-network addresses).
CROSS_NODE = {"host-gw": "hostgw", "vxlan": "vxlan", "bgp": "bgp", "underlay": "underlay"}
POD_NETWORK_OF = {"host-gw": "bridge", "vxlan": "bridge", "bgp": "routed", "underlay": "underlay"}


def load(style: str) -> ModuleType:
    if style not in STYLES:
        raise ValueError(f"unknown pod network {style!r}; choose one of {', '.join(STYLES)}")
    return importlib.import_module(f"course.podnet.{style}")


def load_cross_node(mode: str) -> ModuleType:
    if mode not in CROSS_NODE:
        raise ValueError(f"unknown cross-node mode {mode!r}; choose one of {', '.join(CROSS_NODE)}")
    return importlib.import_module(f"course.podnet.{CROSS_NODE[mode]}")
