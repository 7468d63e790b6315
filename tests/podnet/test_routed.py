"""course.podnet.routed (Calico style) on real namespaces: state read back, then the wire."""

from __future__ import annotations

import pytest

from course.podnet import routed
from course.topology import Cluster
from grader.probes import ping, sniff_while


@pytest.fixture(scope="module")
def cluster():
    with Cluster("t-routed", nodes=1, pods_per_node=2, pod_network="routed") as c:
        yield c


def test_host_veth_named_like_calico():
    # `echo -n default.a | sha1sum` starts with acd53aa4120
    assert routed.host_veth_name("a") == "caliacd53aa4120"
    assert len(routed.host_veth_name("a-very-long-pod-name-indeed")) == 15


def test_pod_side_has_a_32_and_a_link_local_gateway(cluster):
    a = cluster.pod("a")
    assert a.ns.addresses("eth0") == [f"{a.ip}/32"]
    routes = {r["dst"]: r for r in a.ns.routes()}
    assert set(routes) == {"default", "169.254.1.1/32"}
    assert routes["169.254.1.1/32"]["dev"] == "eth0"
    assert routes["169.254.1.1/32"]["scope"] == 253  # scope link
    assert routes["default"]["gateway"] == "169.254.1.1"
    assert routes["default"]["dev"] == "eth0"


def test_node_side_has_no_bridge_no_address_and_a_route_per_pod(cluster):
    node = cluster.node(1)
    kinds = {link["kind"] for link in node.ns.links()}
    assert "bridge" not in kinds
    routes = {r["dst"]: r for r in node.ns.routes()}
    for pod in cluster.pods:
        cali = routed.host_veth_name(pod.name)
        assert pod.host_ifname == cali
        assert node.ns.addresses(cali) == []
        assert node.ns.link(cali)["mac"] == "ee:ee:ee:ee:ee:ee"
        assert node.ns.sysctl(f"net.ipv4.conf.{cali}.proxy_arp") == "1"
        assert node.ns.sysctl(f"net.ipv4.neigh.{cali}.proxy_delay") == "0"
        assert node.ns.sysctl(f"net.ipv4.conf.{cali}.forwarding") == "1"
        route = routes[f"{pod.ip}/32"]
        assert (route["dev"], route["scope"], route["gateway"]) == (cali, 253, None)
    assert node.ns.sysctl("net.ipv4.ip_forward") == "1"


def test_pod_to_pod_is_routed_on_the_wire(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    a.ns.run(["ip", "neigh", "flush", "dev", "eth0"])  # make the ARP exchange visible
    obs, at_b = sniff_while(b.ns, "eth0", lambda: ping(a.ns, b.ip, ttl=64))
    assert obs.ok, obs.describe()
    request = next(f for f in at_b if f.kind == "ICMP echo-request" and f.src == a.ip)
    # The receiver sees the node's veth MAC, not a's, and one hop used up.
    assert request.src_mac == "ee:ee:ee:ee:ee:ee" != a.ns.link("eth0")["mac"]
    assert request.ttl == 63
    # a asked for its gateway, never for b, and the node's veth answered.
    asked = {f.dst for f in obs.frames if f.kind == "ARP who-has"}
    assert asked == {"169.254.1.1"}
    answer = next(f for f in obs.frames if f.kind == "ARP is-at")
    assert answer.src == "169.254.1.1"
    assert answer.src_mac == cluster.node(1).ns.link(a.host_ifname)["mac"]


def test_node_reaches_every_pod(cluster):
    node = cluster.node(1)
    for pod in cluster.pods:
        obs = ping(node.ns, pod.ip)
        assert obs.ok, obs.describe()
        assert obs.iface == pod.host_ifname


def test_proxy_arp_needs_a_route_to_the_gateway():
    """Calico issue #3270: with no route covering 169.254.1.1, the node stays silent."""
    with Cluster("t-routed-noroute", nodes=1, pods_per_node=2, pod_network="routed") as c:
        node, a, b = c.node(1), c.pod("a"), c.pod("b")
        assert node.ns.route_get("169.254.1.1")["dev"] == "lo"
        node.ns.del_route("169.254.1.1/32")
        obs = ping(a.ns, b.ip, timeout=0.5)
        assert not obs.ok
        assert obs.arp_unanswered() == ["169.254.1.1"]


def test_a_node_with_a_default_route_gets_no_extra_route():
    with Cluster("t-routed-gw", nodes=1, pods_per_node=1, pod_network=None, router=True) as c:
        node = c.node(1)
        routed.setup_node(node)
        assert "169.254.1.1/32" not in {r["dst"] for r in node.ns.routes()}
        routed.add_pod(node, c.pod("a"))
        assert ping(node.ns, c.pod("a").ip).ok
        assert ping(c.pod("a").ns, node.ip).ok  # via 169.254.1.1, answered by proxy ARP
