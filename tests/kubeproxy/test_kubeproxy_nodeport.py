"""NodePort with real packets from an external client: KUBE-NODEPORTS -> KUBE-EXT -> ...

externalTrafficPolicy Cluster masquerades (the pod sees the node), Local keeps the
client's address (the pod sees 203.0.113.10): the KUBE-EXT chain's two shapes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from course.kubeproxy import Proxier, ProxierOptions, parse_manifests
from course.topology import Cluster

NODEPORT = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.30
  externalTrafficPolicy: POLICY
  ports: [{name: http, port: 80, targetPort: 8080, nodePort: 30080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints: [{addresses: [10.244.1.2], nodeName: node1}]
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster("06-kube-proxy", nodes=1, pods_per_node=1, client=True) as c:
        yield c


def _sync(cluster: Cluster, policy: str) -> str:
    node = cluster.node(1).ns
    for table in ("nat", "filter"):
        node.run(["iptables", "-t", table, "-F"])
        node.run(["iptables", "-t", table, "-X"])
    node.run(["conntrack", "-F"], check=False)
    objs = parse_manifests(NODEPORT.replace("POLICY", policy), "np.yaml")
    proxier = Proxier(node, ProxierOptions(node_name="node1", cluster_cidr="10.244.0.0/16"))
    proxier.on_service_add(objs.services[0])
    proxier.on_endpoint_slice_add(objs.endpoint_slices[0])
    return proxier.sync()


def _peer_seen_by_pod(cluster: Cluster) -> str | None:
    """Client -> node1:30080; the source address the pod's server saw (None: no connection)."""
    assert cluster.client is not None
    with cluster.pod("a").ns.entered():
        server = socket.socket()
    with cluster.client.ns.entered():
        client = socket.socket()
    with server, client:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("10.244.1.2", 8080))
        server.listen(1)
        client.settimeout(2)
        try:
            client.connect((cluster.node(1).ip, 30080))
        except OSError:
            return None
        conn, peer = server.accept()
        conn.close()
        return str(peer[0])


def test_node_port_cluster_policy_masquerades(cluster: Cluster) -> None:
    payload = _sync(cluster, "Cluster")
    assert (
        "-A KUBE-NODEPORTS -m comment --comment default/web:http -m tcp -p tcp --dport 30080"
        in (payload)
    )
    assert _peer_seen_by_pod(cluster) == "10.244.1.1"  # SNAT to the node's cni0 address


def test_node_port_local_policy_keeps_client_ip(cluster: Cluster) -> None:
    payload = _sync(cluster, "Local")
    assert "-j KUBE-SVL-" in payload
    assert _peer_seen_by_pod(cluster) == "203.0.113.10"


def test_node_port_local_policy_without_local_endpoint_drops(cluster: Cluster) -> None:
    node = cluster.node(1).ns
    _sync(cluster, "Local")
    text = NODEPORT.replace("POLICY", "Local").replace("nodeName: node1", "nodeName: node2")
    objs = parse_manifests(text, "np.yaml")
    proxier = Proxier(node, ProxierOptions(node_name="node1", cluster_cidr="10.244.0.0/16"))
    proxier.on_service_add(objs.services[0])
    proxier.on_endpoint_slice_add(objs.endpoint_slices[0])
    payload = proxier.sync()
    assert '"default/web:http has no local endpoints"' in payload
    assert _peer_seen_by_pod(cluster) is None
