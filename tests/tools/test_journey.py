"""grader.journey: a probe's packet hop by hop, through bridges, nodes and NAT; and where it stops."""

from __future__ import annotations

import time

import pytest

from course.topology import Cluster
from grader import journey, probes
from grader.labs import CheckContext
from grader.verdict import Verdict


@pytest.fixture(scope="module")
def lab():
    """Two nodes (host-gw), pods a, b on node1 and c, d on node2, an underlay switch."""
    probes.warm_up()
    with Cluster("t-journey", nodes=2, pods_per_node=2) as c:
        yield c


def _ctx(c: Cluster) -> CheckContext:
    return CheckContext("t-journey", c.prefix, tuple(c.record.namespaces))


def _veth(c: Cluster, pod: str) -> str:
    return f"node{c.pod(pod).node.index}/{c.pod(pod).host_ifname}"


def test_passing_probe_names_every_hop_in_order(lab):
    obs, trip = journey.ping(_ctx(lab), "node1-a", lab.pod("c").ip, timeout=1.0)
    assert obs.ok and trip.reached
    request = [(h.where, h.direction) for h in trip.legs("request")]
    assert request == [
        ("node1-a/eth0", "out"),
        (_veth(lab, "a"), "in"),
        ("node1/cni0", "in"),
        ("node1/eth0", "out"),
        ("underlay/node1", "in"),
        ("underlay/node2", "out"),
        ("node2/eth0", "in"),
        ("node2/cni0", "out"),
        (_veth(lab, "c"), "out"),
        ("node2-c/eth0", "in"),
    ]
    ttls = [h.ttl for h in trip.legs("request")]
    assert ttls == [64, 64, 64, 63, 63, 63, 63, 62, 62, 62]  # each node routes: one less
    reply = trip.legs("reply")
    assert reply[0].where == "node2-c/eth0" and reply[-1].where == "node1-a/eth0"
    first = trip.legs("request")[0]
    assert first.src_mac == lab.pod("a").ns.link("eth0")["mac"]
    assert first.dst_mac == lab.node(1).ns.link("cni0")["mac"]
    text = trip.text()
    assert "reached node2-c (10.244.2.2); the reply came back to node1-a" in text
    assert not any(h.rewrite for h in trip.hops)


def test_failing_probe_stops_where_the_route_is_missing(lab):
    node1 = lab.node(1).ns
    node1.del_route("10.244.2.0/24")
    try:
        obs, trip = journey.ping(_ctx(lab), "node1-a", lab.pod("c").ip, timeout=0.5)
    finally:
        node1.add_route("10.244.2.0/24", via=lab.node(2).ip)
    assert not obs.ok and not trip.reached
    assert [h.where for h in trip.legs("request")] == [
        "node1-a/eth0",
        _veth(lab, "a"),
        "node1/cni0",
    ]
    assert "last seen: node1/cni0 (in); no packet on node2-c eth0" in trip.outcome
    assert "node1 sent an ICMP error" in trip.outcome  # no route: net unreachable to the pod


def test_dnat_is_named_between_hops(lab):
    node1 = lab.node(1).ns
    b = lab.pod("b").ip
    node1.apply_iptables(
        "*nat\n"
        f"-A PREROUTING -d 10.96.0.10/32 -p tcp --dport 80 -j DNAT --to-destination {b}:8080\n"
        "COMMIT\n"
    )
    try:
        obs, trip = journey.tcp_syn(_ctx(lab), "node1-a", "10.96.0.10", 80, timeout=1.0)
    finally:
        node1.apply_iptables("*nat\nCOMMIT\n")
    assert obs.ok  # pod-b's kernel answers RST: nothing listens, but the packet got there
    rewrites = [h.rewrite for h in trip.legs("request") if h.rewrite]
    assert rewrites == [f"DNAT 10.96.0.10:80 -> {b}:8080 in node1"]
    back = [h.rewrite for h in trip.legs("reply") if h.rewrite]
    assert back and back[0].startswith(f"reverse NAT (conntrack) {b}:8080 -> 10.96.0.10:80")
    assert trip.reached and trip.legs("request")[-1].where == "node1-b/eth0"


def test_journey_rides_on_the_verdict_and_draws(lab):
    _, trip = journey.ping(_ctx(lab), "node1-a", lab.pod("b").ip)
    verdict = journey.attach(Verdict.ok("pods talk"), trip)
    again = Verdict.from_json(verdict.to_json())
    assert "journey of ICMP echo request" in again.render()
    assert again.journey_dot.startswith("digraph journey")
    svg = journey.svg_of(again.journey_dot)
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "<svg" in trip._repr_html_() or "<pre>" in trip._repr_html_()


def test_a_journey_costs_well_under_a_second(lab):
    ctx, dst = _ctx(lab), lab.pod("c").ip
    t0 = time.perf_counter()
    probes.ping(ctx.ns("node1-a"), dst)
    bare = time.perf_counter() - t0
    t0 = time.perf_counter()
    journey.ping(ctx, "node1-a", dst)
    followed = time.perf_counter() - t0
    print(f"probe {bare:.3f} s, with journey {followed:.3f} s (15 interfaces)")
    assert followed - bare < 1.0


def test_each_leg_follows_one_packet():
    """A second packet of the flow (here: the client's RST) does not extend the journey."""
    from course.capture import Row

    def row(t, where, direction, src, sport, dst, dport, flags="S"):
        return Row(t, where, src, dst, "TCP", f"{sport} > {dport} [{flags}]",
                   direction=direction, sport=sport, dport=dport)  # fmt: skip

    rows = [
        row(0.1, "d/eth0", "out", "10.244.1.5", 4000, "10.96.0.10", 80),
        row(0.2, "node1/veth-d", "in", "10.244.1.5", 4000, "10.96.0.10", 80),
        row(0.3, "node1/veth-a", "out", "10.244.1.5", 4000, "10.244.1.2", 8080),
        row(0.4, "a/eth0", "out", "10.244.1.2", 8080, "10.244.1.5", 4000, "SA"),
        row(0.5, "d/eth0", "out", "10.244.1.5", 4000, "10.96.0.10", 80, "R"),
        row(0.6, "node1/veth-d", "in", "10.244.1.5", 4000, "10.96.0.10", 80, "R"),
    ]
    hops = journey.hops_of(rows, journey.Match("tcp", port=4000))
    request = [h.where for h in hops if h.leg == "request"]
    assert request == ["d/eth0", "node1/veth-d", "node1/veth-a"]
    assert [h.rewrite for h in hops if h.rewrite] == [
        "DNAT 10.96.0.10:80 -> 10.244.1.2:8080 in node1"
    ]
