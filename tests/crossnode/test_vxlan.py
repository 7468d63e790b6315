"""flannel's vxlan backend on real namespaces: the device, the entries, the wire, the MTU."""

from __future__ import annotations

import json

import pytest

from course.podnet import vxlan
from course.podnet.picture import NodeFacts, _links, draw_crossnode
from course.topology import Cluster
from grader.encap import about, sniff_wire_while
from grader.probes import ping

from .conftest import failed, ping_pairs


@pytest.fixture(scope="module")
def flannel():
    """node1 and node2 on 192.168.1.0/24, node3 on 192.168.2.0/24 behind the router."""
    with Cluster(
        "t-vxlan", nodes=3, pods_per_node=2, cross_node="vxlan", router=True, subnets=2
    ) as c:
        yield c


def _details(ns, ifname):
    return json.loads(ns.run(["ip", "-d", "-j", "link", "show", ifname]).stdout)[0]


def test_device_is_built_like_flanneld(flannel):
    for node in flannel.nodes:
        link = _details(node.ns, "flannel.1")
        data = link["linkinfo"]["info_data"]
        assert (data["id"], data["local"], data["port"]) == (1, node.ip, 8472)
        assert data["link"] == "eth0" and data["learning"] is False
        assert link["mtu"] == 1450
        assert node.ns.addresses("flannel.1") == [f"10.244.{node.index}.0/32"]


def test_three_entries_per_peer(flannel):
    for node in flannel.nodes:
        neigh = {n["ip"]: n for n in node.ns.neighbours("flannel.1")}
        fdb = {e["mac"]: e["dst"] for e in node.ns.fdb("flannel.1")}
        routes = {r["dst"]: r for r in node.ns.routes()}
        for peer in flannel.nodes:
            if peer is node:
                continue
            mac = peer.ns.link("flannel.1")["mac"]
            gw = f"10.244.{peer.index}.0"
            assert neigh[gw]["mac"] == mac and neigh[gw]["state"] == 0x80  # permanent
            assert fdb[mac] == peer.ip
            r = routes[peer.pod_cidr]
            assert (r["gateway"], r["dev"], r["onlink"]) == (gw, "flannel.1", True)


class Recorder:
    """A namespace stand-in that records which entry flanneld's steps write, in order."""

    def __init__(self):
        self.calls = []

    def add_neighbour(self, ip, mac, dev):
        self.calls.append("neighbour")

    def add_fdb(self, mac, dev, dst=None, replace=False):
        self.calls.append("fdb")

    def add_route(self, dst, via=None, dev=None, onlink=False):
        self.calls.append("route")


def test_entries_are_written_in_flanneld_order():
    ns = Recorder()
    vxlan.add_peer(ns, vxlan.Lease("node2", "192.168.1.12", "10.244.2.0/24", "aa:bb:cc:00:00:02"))
    assert ns.calls == ["neighbour", "fdb", "route"]  # the route last: the kernel never ARPs


def test_pods_veths_and_cni0_get_flannels_mtu(flannel):
    for node in flannel.nodes:
        assert node.ns.link("cni0")["mtu"] == 1450
        for pod in node.pods:
            assert pod.ns.link("eth0")["mtu"] == 1450
            assert node.ns.link(pod.host_ifname)["mtu"] == 1450


def test_every_node_pair_including_the_other_subnet(flannel):
    results = ping_pairs(flannel)
    assert not failed(results)
    assert {obs.reply.ttl for obs in results.values()} == {62}  # two routing nodes, 64 - 2


def test_underlay_carries_udp_8472_vni_1_with_pod_ips_inside(flannel):
    a, c = flannel.pod("a"), flannel.pod("c")
    obs, wire = sniff_wire_while(flannel.underlay.ns, "node1", lambda: ping(a.ns, c.ip))
    assert obs.ok, obs.describe()
    flow = about(wire, a.ip, c.ip)
    assert flow and all(p.encapsulated for p in flow), [p.describe() for p in flow]
    request = next(p for p in flow if p.inner_src == a.ip)
    assert (request.src, request.dst, request.dport, request.vni) == (
        "192.168.1.11",
        "192.168.1.12",
        8472,
        1,
    )
    assert request.inner_kind == "ICMP echo-request" and request.inner_ttl == 63
    assert request.inner_src_mac == flannel.node(1).ns.link("flannel.1")["mac"]
    assert request.inner_dst_mac == flannel.node(2).ns.link("flannel.1")["mac"]
    assert request.length == (20 + 8 + 32) + 50  # the probe's 60-byte packet plus 50


def test_other_subnet_outer_packet_is_routed_by_the_router(flannel):
    a, e = flannel.pod("a"), flannel.pod("e")
    obs, wire = sniff_wire_while(flannel.router.ns, "eth2", lambda: ping(a.ns, e.ip))
    assert obs.ok, obs.describe()
    request = next(p for p in about(wire, a.ip, e.ip) if p.inner_src == a.ip)
    assert (request.src, request.dst, request.vni) == ("192.168.1.11", "192.168.2.13", 1)
    assert request.ttl == 63  # the outer packet crossed the router; the inner one did not see it
    assert request.inner_ttl == 63


def test_df_ping_fits_1450_and_no_more(flannel):
    a, c = flannel.pod("a"), flannel.pod("c")
    fits = a.ns.run(["ping", "-c1", "-W2", "-M", "do", "-s", "1422", c.ip], check=False)
    assert fits.returncode == 0, fits.stdout + fits.stderr
    too_big = a.ns.run(["ping", "-c1", "-W2", "-M", "do", "-s", "1423", c.ip], check=False)
    assert too_big.returncode != 0
    assert "mtu=1450" in too_big.stdout + too_big.stderr


def test_adding_the_device_twice_is_a_clear_error(flannel):
    from course.kernel import KernelError

    node = flannel.node(1)
    with pytest.raises(KernelError, match=r"vxlan flannel\.1 in .*node1: File exists"):
        node.ns.add_vxlan("flannel.1", vni=1, local=node.ip, dev="eth0")


def test_flanneld_keeps_a_matching_device_and_replaces_another(flannel):
    """ensureLink: run again, the same device stays (same VTEP MAC: peers' FDB entries stay
    right); with another VNI it is deleted and made anew (VNI cannot change in place)."""
    node = flannel.node(1)
    before = vxlan.device_info(node.ns)
    assert vxlan.create_device(node.ns, node.ip, node.pod_cidr) == before["mac"]
    assert vxlan.device_info(node.ns) == before
    spare = {"ns": node.ns, "local_ip": node.ip, "subnet": "10.244.99.0/24", "name": "vx-spare"}
    try:
        vxlan.create_device(**spare, vni=7)
        vxlan.create_device(**spare, vni=8)
        assert vxlan.device_info(node.ns, "vx-spare")["vni"] == 8
    finally:
        node.ns.delete_link("vx-spare")


def test_picture_shows_each_node_s_tunnels_and_routes(flannel):
    pic = draw_crossnode(flannel)
    text = str(pic)
    for x, y in (("node1", "node2"), ("node1", "node3"), ("node2", "node3")):
        assert f"{x} <-> {y}: tunnel: VXLAN id 1 dstport 8472\n" in text + "\n", text
    assert "route 10.244.2.0/24 via 10.244.2.0 dev flannel.1 onlink" in text
    assert "flannel.1 VXLAN id 1 dstport 8472 mtu 1450 up" in text
    assert "cable: node3 eth0 <-> switch underlay2 (192.168.2.0/24)" in text
    assert b"<svg" in pic.pipe(format="svg")


def test_picture_draws_a_one_sided_or_misdirected_tunnel_as_such():
    """node1's FDB sends node3's frames to node2 (a break/fix fault); node3's is right."""
    n1 = NodeFacts("node1", "192.168.1.11", vtep="flannel.1 VXLAN id 1 dstport 8472 mtu 1450")
    n1.tunnels = ["192.168.1.12"]
    n2 = NodeFacts("node2", "192.168.1.12")
    n3 = NodeFacts("node3", "192.168.2.13", vtep=n1.vtep, tunnels=["192.168.1.11"])
    links = {pair: (label, attrs["dir"]) for pair, label, attrs in _links([n1, n2, n3])}
    assert links[("node1", "node2")] == (
        "tunnel: VXLAN id 1 dstport 8472 (node1 -> node2 only)",
        "forward",
    )
    assert links[("node1", "node3")] == (
        "tunnel: VXLAN id 1 dstport 8472 (node3 -> node1 only)",
        "back",
    )
