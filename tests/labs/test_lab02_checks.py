"""Lab 02's checks against real namespaces: the right build passes, each known mistake is
caught by the check meant for it, with the message meant for it.

Each wrong state is built directly with course.kernel (no notebook, no nbgrader), the way a
learner's faulty exercise would leave it.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from course.podnet import bridge, routed
from course.topology import Cluster
from grader.labs import CheckContext
from grader.labs.lab02 import LAB, LAB_ID
from grader.probes import ping
from tests.nbharness import run_check, verdict_caught


def lab_cluster() -> Cluster:
    """The notebook's cluster: node1 for bridge mode, node2 for routed mode, nothing plugged."""
    return Cluster(
        LAB_ID, nodes=2, pods_per_node=2, pod_network=None, cross_node=None, router=True
    ).build()


def plug_bridge(c: Cluster) -> None:
    node = c.node(1)
    bridge.setup_node(node)
    for pod in node.pods:
        bridge.add_pod(node, pod)


def plug_routed(c: Cluster) -> None:
    node = c.node(2)
    routed.setup_node(node)
    for pod in node.pods:
        routed.add_pod(node, pod)


@pytest.fixture
def lab() -> Iterator[Cluster]:
    c = lab_cluster()
    try:
        yield c
    finally:
        c.destroy()


run = functools.partial(run_check, LAB_ID)
assert_caught = functools.partial(verdict_caught, where=("observed",))


# --- the right build ------------------------------------------------------------------------------
def test_reference_build_passes_every_exercise_check(lab):
    plug_bridge(lab)
    plug_routed(lab)
    switched = run(lab, "ex1-switched")
    assert switched.passed and "TTL 64" in switched.summary
    assert run(lab, "ex1-gateway").passed
    routed_path = run(lab, "ex2-routed")
    assert routed_path.passed and "TTL 63" in routed_path.summary
    assert "ee:ee:ee:ee:ee:ee" in routed_path.summary
    assert run(lab, "ex2-node").passed


def test_nothing_built_fails_with_no_cable(lab):
    for check_id in ("ex1-switched", "ex1-gateway", "ex2-routed", "ex2-node"):
        assert_caught(run(lab, check_id), "has no cable to node")


# --- bridge mode mutants --------------------------------------------------------------------------
def test_veth_not_in_cni0(lab):
    plug_bridge(lab)
    a = lab.pod("a")
    lab.node(1).ns.set_master(a.host_ifname, None)
    want = f"{a.host_ifname} (a's cable end in node1) is not a port of cni0"
    assert_caught(run(lab, "ex1-switched"), want, "who has 10.244.1.3?", "no `master cni0`")
    assert_caught(run(lab, "ex1-gateway"), want)


def test_pod_without_default_route(lab):
    plug_bridge(lab)
    lab.pod("b").ns.del_route("0.0.0.0/0")
    assert run(lab, "ex1-switched").passed  # same /24: no gateway needed
    assert_caught(
        run(lab, "ex1-gateway"),
        "pod b (10.244.1.3) has no default route",
        "`ip route get 192.168.1.11` -> no route",
    )


def test_gateway_address_missing_from_cni0(lab):
    node = lab.node(1)
    node.ns.add_bridge("cni0")
    node.ns.up("cni0")
    for pod in node.pods:
        bridge.add_pod(node, pod)
    assert run(lab, "ex1-switched").passed  # pod to pod is pure L2
    assert_caught(
        run(lab, "ex1-gateway"),
        "cni0 has no gateway address 10.244.1.1",
        "`ip route get 10.244.1.2` -> via 192.168.1.1 dev eth0",
    )


# --- routed mode mutants --------------------------------------------------------------------------
def test_proxy_arp_off(lab):
    plug_routed(lab)
    c = lab.pod("c")
    lab.node(2).ns.sysctl(f"net.ipv4.conf.{c.host_ifname}.proxy_arp", 0)
    assert_caught(
        run(lab, "ex2-routed"),
        f"c's ARP for 169.254.1.1 went unanswered: proxy ARP is off on {c.host_ifname}",
        "who has 169.254.1.1?",
    )


def test_forwarding_off_after_traffic_stops_at_the_node(lab):
    plug_routed(lab)
    c, d = lab.pod("c"), lab.pod("d")
    assert ping(c.ns, d.ip).ok  # c has learned 169.254.1.1's MAC
    lab.node(2).ns.sysctl("net.ipv4.ip_forward", 0)
    assert_caught(
        run(lab, "ex2-routed"),
        f"the packet reached node2 on {c.host_ifname} and stopped there: the node does not forward",
        f"The packet arrived on {c.host_ifname} in node2 and went no further",
        "net.ipv4.ip_forward = 0",
    )


def test_forwarding_never_on(lab):
    plug_routed(lab)
    lab.node(2).ns.sysctl("net.ipv4.ip_forward", 0)
    assert_caught(
        run(lab, "ex2-routed"),
        "the node does not forward",
        "only on an interface that forwards",
    )


def test_missing_route_back_to_the_sender(lab):
    plug_routed(lab)
    c = lab.pod("c")
    lab.node(2).ns.run(["ip", "route", "del", f"{c.ip}/32"])
    assert_caught(
        run(lab, "ex2-routed"),
        "node2 has no route back to 10.244.2.2",
        "d answered, and the reply arrived on",
        "`ip route get 10.244.2.2` -> via 192.168.1.1 dev eth0",
    )
    assert_caught(run(lab, "ex2-node"), "node2 has no route to 10.244.2.2")


def test_missing_route_to_the_receiver(lab):
    plug_routed(lab)
    lab.node(2).ns.run(["ip", "route", "del", f"{lab.pod('d').ip}/32"])
    assert_caught(
        run(lab, "ex2-routed"),
        "node2 has no route to 10.244.2.3",
        "The request arrived on",
    )


def test_pod_address_24_instead_of_32(lab):
    node = lab.node(2)
    routed.setup_node(node)
    c, d = lab.pod("c"), lab.pod("d")
    routed.add_pod(node, d)
    cali = routed.host_veth_name("c")
    node.ns.add_veth(cali, c.ns, "eth0")
    c.ns.add_address("eth0", f"{c.ip}/24")  # the mistake
    c.ns.up("eth0")
    c.ns.add_route("169.254.1.1/32", dev="eth0", scope="link")
    c.ns.add_route("0.0.0.0/0", via="169.254.1.1", dev="eth0")
    routed.plumb_host_side(node.ns, cali, c.ip)
    c.host_ifname = cali
    verdict = run(lab, "ex2-routed")
    assert_caught(
        verdict,
        "pod c (10.244.2.2) ARPs for its peer 10.244.2.3 directly",
        "10.244.2.2/24",
        "(on-link, no gateway)",
    )
    assert "who has 10.244.2.3?" in verdict.observed or "ARP table holds" in verdict.observed
    assert run(lab, "ex2-node").passed  # the node's side is right


# --- predict, then observe ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("check_id", "name", "right", "wrong"),
    [
        ("q1-ttl", "q1", "routed", "bridge"),
        (
            "q2-mac",
            "q2",
            {"bridge": "sender", "routed": "node"},
            {"bridge": "node", "routed": "node"},
        ),
        ("q3-routes", "q3", {"bridge": "a", "routed": "b"}, {"bridge": "b", "routed": "a"}),
        ("q4-fdb", "q4", {"bridge": "a", "routed": "b"}, {"bridge": "a", "routed": "c"}),
    ],
)
def test_questions(check_id, name, right, wrong):
    chk = LAB.check(check_id)
    assert chk.answers == (name,) and not chk.needs_run
    ok = chk.run(CheckContext(LAB_ID, "", (), {name: right}))
    assert ok.passed, ok.render()
    bad = chk.run(CheckContext(LAB_ID, "", (), {name: wrong}))
    assert not bad.passed and repr(wrong) in bad.observed and bad.hint


def test_half_built_cable_is_named(lab):
    plug_bridge(lab)
    plug_routed(lab)
    d = lab.pod("d")
    lab.node(2).ns.down(d.host_ifname)
    assert_caught(run(lab, "ex2-routed"), f"{d.host_ifname} in node2 is DOWN")
    lab.node(2).ns.up(d.host_ifname)
    lab.pod("b").ns.run(["ip", "addr", "flush", "dev", "eth0"])
    assert_caught(run(lab, "ex1-switched"), "pod b (10.244.1.3) has no address 10.244.1.3 on eth0")


def test_proxy_arp_turned_off_after_traffic_is_still_caught(lab):
    """The pods' ARP caches still hold 169.254.1.1, so packets flow; the sysctl tells."""
    plug_routed(lab)
    c = lab.pod("c")
    assert run(lab, "ex2-routed").passed
    lab.node(2).ns.sysctl(f"net.ipv4.conf.{c.host_ifname}.proxy_arp", 0)
    want = f"proxy ARP is off on {c.host_ifname}"
    assert_caught(run(lab, "ex2-routed"), want, "once that entry expires")
    assert_caught(run(lab, "ex2-node"), want)


def test_cni0_down(lab):
    plug_bridge(lab)
    lab.node(1).ns.down("cni0")
    assert_caught(run(lab, "ex1-switched"), "cni0 is DOWN", "administratively down")
