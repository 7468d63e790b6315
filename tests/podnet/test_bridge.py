"""course.podnet.bridge (CNI bridge plugin style) on real namespaces: state, then the wire."""

from __future__ import annotations

import pytest

from course.podnet import bridge
from course.topology import Cluster
from grader.probes import ping, sniff_while


@pytest.fixture(scope="module")
def cluster():
    with Cluster("t-bridge", nodes=1, pods_per_node=2, pod_network="bridge") as c:
        yield c


def test_node_has_cni0_with_the_gateway_and_one_port_per_pod(cluster):
    node = cluster.node(1)
    assert node.ns.link("cni0")["kind"] == "bridge"
    assert node.ns.addresses("cni0") == ["10.244.1.1/24"]
    cni0 = node.ns.index("cni0")
    for pod in cluster.pods:
        assert pod.host_ifname == bridge.host_veth_name(pod.ns.name)
        assert node.ns.link(pod.host_ifname)["master"] == cni0
        assert node.ns.addresses(pod.host_ifname) == []
        assert pod.ns.addresses("eth0") == [f"{pod.ip}/24"]
        routes = {r["dst"]: r for r in pod.ns.routes()}
        assert routes["default"]["gateway"] == "10.244.1.1"
        assert routes["10.244.1.0/24"]["gateway"] is None  # the /24 is on the wire


def test_pod_to_pod_is_switched_on_the_wire(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    a.ns.run(["ip", "neigh", "flush", "dev", "eth0"])  # make the ARP exchange visible
    obs, at_b = sniff_while(b.ns, "eth0", lambda: ping(a.ns, b.ip, ttl=64))
    assert obs.ok, obs.describe()
    request = next(f for f in at_b if f.kind == "ICMP echo-request" and f.src == a.ip)
    # The receiver sees the sender's own MAC and the TTL the sender used: no router between.
    assert request.src_mac == a.ns.link("eth0")["mac"]
    assert request.ttl == 64
    # a asked ARP for b itself, and b (not the node) answered.
    asked = {f.dst for f in obs.frames if f.kind == "ARP who-has"}
    assert asked == {b.ip}
    answer = next(f for f in obs.frames if f.kind == "ARP is-at")
    assert answer.src == b.ip and answer.src_mac == b.ns.link("eth0")["mac"]


def test_bridge_learned_both_pod_macs(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    assert ping(a.ns, b.ip).ok
    fdb = cluster.node(1).ns.run(["bridge", "fdb", "show", "br", "cni0"]).stdout
    for pod in (a, b):
        mac = pod.ns.link("eth0")["mac"]
        line = next(ln for ln in fdb.splitlines() if ln.startswith(mac))
        assert f"dev {pod.host_ifname}" in line


def test_node_reaches_every_pod(cluster):
    node = cluster.node(1)
    for pod in cluster.pods:
        obs = ping(node.ns, pod.ip)
        assert obs.ok, obs.describe()
        assert obs.iface == "cni0"
