"""host-gw (static routes) and the VPC-CNI-style underlay on real namespaces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from course.podnet import underlay
from course.podnet.picture import draw_crossnode
from course.topology import Cluster
from grader.encap import about, sniff_wire_while
from grader.probes import ping

from .conftest import failed, ping_pairs

K8SNET = str(Path(sys.executable).with_name("k8snet"))


@pytest.fixture(scope="module")
def hostgw():
    """node3 on the other subnet: its routes cannot be written."""
    with Cluster("t-hostgw", nodes=3, pods_per_node=1, cross_node="host-gw", subnets=2) as c:
        yield c


@pytest.fixture(scope="module")
def vpc():
    with Cluster(
        "t-underlay",
        nodes=3,
        pods_per_node=2,
        pod_network="underlay",
        cross_node="underlay",
        subnets=2,
    ) as c:
        yield c


# --- host-gw ---------------------------------------------------------------------------------
def test_hostgw_routes_via_node_ips_on_the_same_subnet(hostgw):
    routes = {r["dst"]: r for r in hostgw.node(1).ns.routes()}
    assert routes["10.244.2.0/24"]["gateway"] == "192.168.1.12"
    assert "10.244.3.0/24" not in routes


def test_hostgw_refuses_a_gateway_on_another_subnet(hostgw):
    assert any(
        "10.244.3.0/24 via 192.168.2.13 on node1" in e and "Network is unreachable" in e
        for e in hostgw.cross_node_errors
    )


def test_hostgw_same_subnet_pairs_work_unencapsulated_other_subnet_fails(hostgw):
    assert not failed(ping_pairs(hostgw, {1, 2}))
    a, b = hostgw.pod("a"), hostgw.pod("b")
    _, wire = sniff_wire_while(hostgw.underlay.ns, "node1", lambda: ping(a.ns, b.ip))
    request = next(p for p in about(wire, a.ip, b.ip) if p.src == a.ip)
    assert not request.encapsulated and request.ttl == 63
    cross = ping(a.ns, hostgw.pod("c").ip)
    assert not cross.ok  # out of the default route to a router that knows no pod ranges


# --- underlay --------------------------------------------------------------------------------
def test_underlay_pods_hold_node_network_addresses(vpc):
    assert [p.ip for p in vpc.pods] == [
        "192.168.1.111",
        "192.168.1.112",
        "192.168.1.121",
        "192.168.1.122",
        "192.168.2.131",
        "192.168.2.132",
    ]
    a = vpc.pod("a")
    assert a.ns.addresses("eth0") == ["192.168.1.111/32"]
    assert a.host_ifname == underlay.host_veth_name("a") and a.host_ifname.startswith("eni")


def test_underlay_each_node_answers_for_its_own_pods_only(vpc):
    for node in vpc.nodes:
        assert sorted(node.ns.proxy_neighbours("eth0")) == sorted(p.ip for p in node.pods)
        # no route to any other node's pods: the underlay delivers them
        host_routes = {r["dst"] for r in node.ns.routes() if r["dst"].endswith("/32")}
        assert host_routes == {f"{p.ip}/32" for p in node.pods}


def test_underlay_every_node_pair_including_the_other_subnet(vpc):
    results = ping_pairs(vpc)
    assert not failed(results)


def test_underlay_wire_shows_pod_ips_and_the_nodes_mac(vpc):
    a, c = vpc.pod("a"), vpc.pod("c")
    a.node.ns.run(["ip", "neigh", "flush", "dev", "eth0"])
    obs, wire = sniff_wire_while(vpc.underlay.ns, "node1", lambda: ping(a.ns, c.ip))
    assert obs.ok, obs.describe()
    request = next(p for p in about(wire, a.ip, c.ip) if p.src == a.ip)
    assert not request.encapsulated and request.ttl == 63
    # node1 asked the underlay for the pod address itself, and node2 answered for it
    mac = a.node.ns.neighbours("eth0")
    assert {n["ip"]: n["mac"] for n in mac}[c.ip] == vpc.node(2).ns.link("eth0")["mac"]


def test_k8snet_up_with_a_mode_and_down(monkeypatch):
    env_prefix = "kl3c"
    env = {**__import__("os").environ, "K8SNET_NS_PREFIX": env_prefix}
    try:
        up = subprocess.run(
            [K8SNET, "up", "03-across-nodes", "--mode", "underlay"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "192.168.1.111/32" in up.stdout
        bad = subprocess.run(
            [K8SNET, "up", "03-across-nodes", "--mode", "ipip"], env=env, capture_output=True
        )
        assert bad.returncode == 2 and b"unknown mode" in bad.stdout
    finally:
        down = subprocess.run([K8SNET, "down", "03-across-nodes"], env=env, capture_output=True)
    assert down.returncode == 0


def test_picture_hostgw_routes_and_the_missing_one(hostgw):
    text = str(draw_crossnode(hostgw))
    assert "route 10.244.2.0/24 via 192.168.1.12 dev eth0\n" in text
    assert "10.244.3.0/24 via" not in text.split("node2:")[0]  # node1 has no route to node3
    assert "tunnel" not in text and "BGP" not in text


def test_picture_underlay_each_node_answers_for_its_pods(vpc):
    text = str(draw_crossnode(vpc))
    node2 = text.split("node2:")[1].split("node3:")[0]
    assert "answers ARP for 192.168.1.121 (proxy)" in node2
    assert "pod a 192.168.1.111" in text
    assert text.count("no route to other nodes' pods") == 3
