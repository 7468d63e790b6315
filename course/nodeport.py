"""Lab 07's cluster: two nodes, an outside client, kube-proxy on every node, cluster DNS.

    node1 192.168.1.11  pods a (10.244.1.2), dns (10.244.1.3)
    node2 192.168.1.12  pods b (10.244.2.2), c (10.244.2.3)
    router 192.168.1.1 / 203.0.113.1, client 203.0.113.10 (outside the cluster)

Nodes reach each other's pod ranges through host-gw routes (`10.244.2.0/24 via
192.168.1.12`); the router knows only the node network and the client network, like a
real network outside a cluster: it has **no route to pod addresses**. Pods a, b and c run
`course.whoami` on port 8080; pod dns runs `course.dns` behind the kube-dns Service.
The Services and Pods are `examples/manifests/07-nodeport`.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.dns import ClusterDNS
from course.kubeproxy.cluster import ClusterKubeProxy
from course.kubeproxy.objects import Service, load_manifests, parse_manifests
from course.labs import topology
from course.topology import Cluster

LAB_ID = "07-nodeport-masquerade"
MANIFESTS = Path(__file__).resolve().parent.parent / "examples" / "manifests" / "07-nodeport"
TOPOLOGY: dict[str, Any] = topology(LAB_ID)
WHOAMI_PODS = ("a", "b", "c")
NODE_PORT = 30080
WEB_CLUSTER_IP = "10.96.0.20"
SELF_CLUSTER_IP = "10.96.0.30"  # Service `a`: pod a's own Service (hairpin)


@dataclass
class NodePortLab:
    """The running lab: the cluster, kube-proxy on both nodes, and the DNS server."""

    cluster: Cluster
    kube_proxy: ClusterKubeProxy
    dns: ClusterDNS
    extra: dict[str, Any] = field(default_factory=dict)

    def apply(self, yaml_text: str, filename: str = "notebook.yaml") -> list[Service]:
        """`kubectl apply -f` for Services: add them, sync every node, update DNS."""
        services = parse_manifests(yaml_text, filename).services
        for svc in services:
            self.kube_proxy.add_service(svc)
        self.sync()
        return services

    def sync(self) -> dict[str, str]:
        """Every node's kube-proxy resyncs, and CoreDNS re-reads the EndpointSlices."""
        payloads = self.kube_proxy.sync()
        self.update_dns()
        return payloads

    def update_dns(self) -> dict[str, Any]:
        kp = self.kube_proxy
        return self.dns.update(kp.controller.services.values(), kp.endpoint_slices())


def start_servers(cluster: Cluster) -> None:
    """`course.whoami` in pods a, b, c; returns once each one listens."""
    for name in WHOAMI_PODS:
        proc = cluster.pod(name).exec(
            [sys.executable, "-m", "course.whoami", name, "8080"],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"whoami in pod {name} did not start: {line!r}")


def build(cluster: Cluster, **proxy_options: Any) -> NodePortLab:
    """Servers, kube-proxy (one per node) and DNS on an already built lab cluster."""
    start_servers(cluster)
    objects = load_manifests([MANIFESTS])
    kp = ClusterKubeProxy(cluster, objects.services, objects.pods, **proxy_options)
    dns = ClusterDNS(cluster.pod("dns")).start()
    lab = NodePortLab(cluster, kp, dns)
    lab.sync()
    return lab
