"""The cluster each lab starts from, so `k8snet up <lab>` builds what the notebook expects."""

from __future__ import annotations

from typing import Any

LAB_TOPOLOGIES: dict[str, dict[str, Any]] = {
    "sandbox": {"nodes": 3, "pods_per_node": 3, "router": True, "client": True},
    "01-netns-veth": {"nodes": 1, "pods_per_node": 0, "pod_network": None, "underlay": False},
    # node1 is built as a bridge node and node2 as a routed node by the learner; the router
    # gives the nodes a default route, which Linux proxy ARP needs (calico#3270).
    "02-bridge-vs-routed": {
        "nodes": 2,
        "pods_per_node": 2,
        "pod_network": None,
        "cross_node": None,
        "router": True,
    },
    # three nodes, two pods each, behind a router; `k8snet up 03-across-nodes --mode bgp`
    # picks another way across (vxlan, bgp, host-gw, underlay).
    "03-across-nodes": {
        "nodes": 3,
        "pods_per_node": 2,
        "pod_network": "bridge",
        "cross_node": "vxlan",
        "router": True,
    },
    # node1 only: the learner's plugin (and the grader, as the runtime) make the pods
    "04-cni-plugin": {"nodes": 1, "pods_per_node": 0, "pod_network": None, "underlay": False},
    # pods a, b, c back the Services, pod d is the client. The router is node1's default
    # gateway, as on a real network: a process on the node dialling a ClusterIP needs a route
    # to get past the output route lookup, which comes before nat OUTPUT (without one,
    # connect() fails with "Network is unreachable" before KUBE-SERVICES is ever walked).
    "06-kube-proxy": {"nodes": 1, "pods_per_node": 4, "pod_network": "bridge", "router": True},
    # node1 (pods a and c on cni0) forwards to pod b on node2 over the underlay: the three
    # paths (forwarded, to a node process, from a node process) are all taken in node1; the
    # router gives the nodes a default route, so an untranslated virtual IP leaves by eth0.
    "05-netfilter-order": {"nodes": 2, "pods": {1: ["a", "c"], 2: ["b"]}, "router": True},
    # a and dns on node1, the web pods b and c on node2; the client 203.0.113.10 is outside
    # (course.nodeport starts the servers, kube-proxy on both nodes and the cluster DNS).
    "07-nodeport-masquerade": {
        "nodes": 2,
        "pods": {1: ["a", "dns"], 2: ["b", "c"]},
        "router": True,
        "client": True,
    },
}


# What a lab's setup cell does after building the cluster, for `k8snet up LAB` to do the same
# ("module:function", called with the built Cluster): servers, kube-proxy's rules, DNS. Labs
# not listed here build everything else in their exercises.
LAB_PREPARE: dict[str, str] = {
    "05-netfilter-order": "course.netfilter.lab:prepare",
    "07-nodeport-masquerade": "course.nodeport:build",
}


def prepare(lab: str, cluster: Any) -> bool:
    """Run `lab`'s setup step (LAB_PREPARE) on `cluster`; False when the lab has none."""
    target = LAB_PREPARE.get(lab)
    if target is None:
        return False
    from importlib import import_module

    module, _, function = target.partition(":")
    getattr(import_module(module), function)(cluster)
    return True


def topology(lab: str) -> dict[str, Any]:
    try:
        return LAB_TOPOLOGIES[lab]
    except KeyError:
        known = ", ".join(LAB_TOPOLOGIES)
        raise KeyError(f"unknown lab {lab!r}; known labs: {known}") from None
