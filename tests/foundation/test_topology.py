"""course.topology: a cluster of namespaces that works, keeps to itself, and always goes away."""

from __future__ import annotations

import pytest

from course.kernel import list_netns
from course.topology import Cluster
from grader.probes import ping


def _all_ifnames(cluster: Cluster) -> list[str]:
    return [link["name"] for ns in cluster.namespaces.values() for link in ns.links()]


def test_build_follows_the_addressing_plan_and_teardown_leaves_nothing():
    with Cluster("t-topology", nodes=2, pods_per_node=2, router=True, client=True) as c:
        prefix = c.prefix
        assert [n.ip for n in c.nodes] == ["192.168.1.11", "192.168.1.12"]
        assert [p.ip for p in c.pods] == ["10.244.1.2", "10.244.1.3", "10.244.2.2", "10.244.2.3"]
        assert c.node(1).ns.addresses("cni0") == ["10.244.1.1/24"]
        port = c.pod("a").host_ifname
        assert c.node(1).ns.bridge_port_flags(port)["hairpin"]  # flannel's hairpinMode: true
        assert c.pod("a").ns.addresses("eth0") == ["10.244.1.2/24"]
        assert c.client is not None and c.client.ns.addresses("eth0") == ["203.0.113.10/24"]
        assert all(len(name) <= 15 for name in _all_ifnames(c))
        assert c.record.path.exists()
        assert len(list_netns(prefix + "-")) == 9
    assert list_netns(prefix + "-") == []
    assert not c.record.path.exists()


def test_pod_to_pod_icmp_same_node_is_switched_cross_node_is_routed():
    with Cluster("t-topology", nodes=2, pods_per_node=2) as c:
        a, b, d = c.pod("a"), c.pod("b"), c.pod("d")
        same = ping(a.ns, b.ip)
        assert same.ok, same.describe()
        assert same.reply.ttl == 64 and same.reply.src == b.ip
        assert same.reply.src_mac == b.ns.link("eth0")["mac"]  # switched: the peer's own MAC
        cross = ping(a.ns, d.ip)
        assert cross.ok, cross.describe()
        assert cross.reply.ttl == 62  # two routers: node2 and node1
        assert cross.reply.src_mac == c.node(1).ns.link("cni0")["mac"]


def test_two_clusters_side_by_side_do_not_interfere():
    with (
        Cluster("t-one", nodes=1, pods_per_node=2) as one,
        Cluster("t-two", nodes=1, pods_per_node=2) as two,
    ):
        assert one.prefix != two.prefix
        assert one.pod("a").ip == two.pod("a").ip  # same plan, separate worlds
        two.pod("b").ns.down("eth0")  # break only the second cluster
        assert ping(one.pod("a").ns, one.pod("b").ip).ok
        assert not ping(two.pod("a").ns, two.pod("b").ip, timeout=0.5).ok
        two.destroy()
        assert ping(one.pod("a").ns, one.pod("b").ip).ok


def test_external_client_reaches_nodes_through_the_router():
    with Cluster("t-topology", nodes=2, pods_per_node=0, router=True, client=True) as c:
        obs = ping(c.client.ns, c.node(2).ip)
        assert obs.ok, obs.describe()
        assert obs.reply.ttl == 63


def test_failed_build_undoes_everything():
    c = Cluster("t-topology", nodes=2, pods_per_node=1, pod_network="no-such-style")
    with pytest.raises(ValueError, match="unknown pod network"):
        c.build()
    assert list_netns(c.prefix + "-") == []
    assert not c.record.path.exists()


def test_bare_pods_for_lab01():
    with Cluster("t-topology", nodes=1, pods_per_node=2, pod_network=None, underlay=False) as c:
        assert [link["name"] for link in c.pod("a").ns.links()] == ["lo"]
        assert c.pod("a").ns.link("lo")["up"]
        extra = c.netns("scratch")
        assert extra.name == f"{c.prefix}-scratch"
        prefix = c.prefix
    assert list_netns(prefix + "-") == []


def test_drawing_shows_every_namespace_and_link():
    with Cluster("t-topology", nodes=2, pods_per_node=1, router=True) as c:
        graph = c.draw()
        source = graph.source
        for ns in c.namespaces.values():
            assert ns.name.removeprefix(c.prefix + "-") in source
        assert "10.244.1.2/24" in source and "port of cni0" in source
        edges = [line for line in source.splitlines() if " -- " in line]
        assert len(edges) == 5  # node1, node2, router to the underlay; two pods to their node
        assert any('"node1-a":eth0' in e and "node1:veth" in e for e in edges), edges
        assert graph.pipe(format="svg").startswith(b"<?xml") or b"<svg" in graph.pipe(format="svg")
