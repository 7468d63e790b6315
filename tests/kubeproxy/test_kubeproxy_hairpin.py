"""Hairpin: a pod reaching itself through its own Service, on a real bridge.

The KUBE-SEP rule `-s <endpoint ip> -j KUBE-MARK-MASQ` is what makes this work: without
SNAT, the pod would answer its own SYN locally and the DNAT'd connection never completes.
Measured in the kernel notes; proven again here with the proxier's own rules.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from course.kubeproxy import Proxier, ProxierOptions, parse_manifests
from course.topology import Cluster

SELF_SERVICE = """\
apiVersion: v1
kind: Service
metadata: {name: self, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: self-1, namespace: default, labels: {kubernetes.io/service-name: self}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.1.2], nodeName: node1}]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster("06-kube-proxy", nodes=1, pods_per_node=1, underlay=False) as c:
        node, pod = c.node(1), c.pod("a")
        assert pod.host_ifname is not None
        node.ns.bridge_port(pod.host_ifname, hairpin=True)  # what the kubelet's CNI sets
        yield c


def _sync(cluster: Cluster, drop_hairpin_rule: bool) -> str:
    node = cluster.node(1).ns
    for table in ("nat", "filter"):
        node.run(["iptables", "-t", table, "-F"])
        node.run(["iptables", "-t", table, "-X"])
    node.run(["conntrack", "-F"], check=False)
    objs = parse_manifests(SELF_SERVICE, "self.yaml")
    proxier = Proxier(node, ProxierOptions(node_name="node1", cluster_cidr="10.244.0.0/16"))
    proxier.on_service_add(objs.services[0])
    proxier.on_endpoint_slice_add(objs.endpoint_slices[0])
    payload = proxier.sync()
    if drop_hairpin_rule:
        mutant = [ln for ln in payload.splitlines() if "-s 10.244.1.2 -j KUBE-MARK-MASQ" not in ln]
        node.apply_iptables("\n".join(mutant) + "\n", noflush=True)
    return payload


def _connect_to_self(cluster: Cluster) -> str | None:
    """From pod a to 10.96.0.20:80 (-> pod a:8080); the peer address the server saw."""
    with cluster.pod("a").ns.entered():
        server = socket.socket()
        client = socket.socket()
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("10.244.1.2", 8080))
        server.listen(1)
        client.settimeout(1.5)
        try:
            client.connect(("10.96.0.20", 80))
        except OSError:
            return None
        conn, peer = server.accept()
        conn.close()
        return str(peer[0])


def test_pod_reaches_itself_through_its_service(cluster: Cluster) -> None:
    payload = _sync(cluster, drop_hairpin_rule=False)
    assert "-A KUBE-SEP-" in payload and "-s 10.244.1.2 -j KUBE-MARK-MASQ" in payload
    # masqueraded: the server sees the node's bridge address, not its own IP
    assert _connect_to_self(cluster) == "10.244.1.1"


def test_without_the_hairpin_masquerade_rule_it_fails(cluster: Cluster) -> None:
    _sync(cluster, drop_hairpin_rule=True)
    assert _connect_to_self(cluster) is None
