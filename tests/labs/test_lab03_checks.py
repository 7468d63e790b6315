"""Lab 03's checks against real namespaces: each stage of the lab built the right way passes,
and each known mistake is caught by the check meant for it, with the message meant for it.

The states are built directly with course.podnet (no notebook, no nbgrader), the way the
notebook's cells (or a learner's faulty ones) leave them.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator

import pytest

from course.faults import inject
from course.faults.lab03 import CATALOGUE
from course.podnet import bgp, underlay, vxlan
from course.topology import Cluster
from grader.labs import CheckContext
from grader.labs.lab03 import LAB_ID
from grader.labs.lab03_breakfix import a_reaches_e
from tests.faultpairs import drawable, ids, problem
from tests.nbharness import run_check, verdict_caught


def lab_cluster() -> Cluster:
    """The notebook's cluster: 3 nodes (node3 on another subnet), bridge pods, nothing across."""
    return Cluster(
        LAB_ID,
        nodes=3,
        pods_per_node=2,
        pod_network="bridge",
        cross_node=None,
        router=True,
        subnets=2,
    ).build()


@pytest.fixture
def lab() -> Iterator[Cluster]:
    c = lab_cluster()
    try:
        yield c
    finally:
        c.destroy()


run = functools.partial(run_check, LAB_ID)
caught = functools.partial(verdict_caught, where=("observed", "hint"))


def overlay_1_2(c: Cluster) -> None:
    vxlan.connect_nodes([c.node(1), c.node(2)], pod_mtu=False)


def start_birds(c: Cluster, node1_config: str | None = None) -> None:
    for n in (1, 2):
        c.node(n).ns.delete_link(vxlan.DEVICE) if c.node(n).ns.has_link(vxlan.DEVICE) else None
    for n in (2, 3, 1):
        node = c.node(n)
        cfg = node1_config if n == 1 else None
        bgp.setup_node(c, node, config=cfg)


def node1_config(c: Cluster) -> str:
    node = c.node(1)
    peers = [c.node(2), c.node(3)]
    return bgp.node_config(node, peers, bgp.bird_of(c, node).log)


# --- exercise 1: VXLAN -----------------------------------------------------------------------------
def test_ex1_overlay_built_like_flanneld_passes(lab):
    overlay_1_2(lab)
    v = run(lab, "ex1-vxlan")
    assert v.passed, v.render()
    assert "VXLAN VNI 1" in v.summary and "192.168.1.11:" in v.summary and ":8472" in v.summary


def test_ex1_untouched_says_no_device(lab):
    caught(run(lab, "ex1-vxlan"), "node1 has no VXLAN device flannel.1")


def test_ex1_missing_fdb(lab):
    overlay_1_2(lab)
    ns, mac = lab.node(1).ns, lab.node(2).ns.link("flannel.1")["mac"]
    ns.ipr.fdb("del", ifindex=ns.index("flannel.1"), lladdr=mac, dst="192.168.1.12")
    caught(
        run(lab, "ex1-vxlan"),
        "node1's FDB does not map node2's VTEP MAC to 192.168.1.12",
        "nothing of this ping crossed the underlay",
        "no UDP leaves node1",
    )


def test_ex1_wrong_vni(lab):
    overlay_1_2(lab)
    vxlan.recreate(lab.node(2).ns, vni=2)
    caught(
        run(lab, "ex1-vxlan"),
        "VNI mismatch: node1's flannel.1 uses VNI 1, node2's uses VNI 2",
        "VXLAN VNI 1 carrying",
    )


def test_ex1_wrong_port(lab):
    overlay_1_2(lab)
    vxlan.recreate(lab.node(1).ns, port=4789)
    caught(
        run(lab, "ex1-vxlan"),
        "UDP port mismatch: node1's flannel.1 uses dstport 4789, node2's uses 8472",
        ":4789",
    )


def test_ex1_missing_neighbour(lab):
    overlay_1_2(lab)
    ns = lab.node(1).ns
    ns.ipr.neigh("del", dst="10.244.2.0", ifindex=ns.index("flannel.1"))
    caught(
        run(lab, "ex1-vxlan"),
        "node1 has no permanent neighbour entry for 10.244.2.0",
        "the kernel ARPs on the overlay",
    )


def test_ex1_missing_route(lab):
    overlay_1_2(lab)
    ns = lab.node(1).ns
    ns.ipr.route("del", dst="10.244.2.0/24", oif=ns.index("flannel.1"))
    caught(
        run(lab, "ex1-vxlan"),
        "node1 does not route 10.244.2.0/24 into flannel.1",
        "via 192.168.1.1 dev eth0",
    )


def test_ex1_forwarding_off(lab):
    overlay_1_2(lab)
    lab.node(2).ns.sysctl("net.ipv4.ip_forward", 0)
    caught(run(lab, "ex1-vxlan"), "node2 does not forward", "ip_forward = 0")


# --- exercise 2: MTU -------------------------------------------------------------------------------
def test_ex2_mtu(lab):
    overlay_1_2(lab)
    v = run(lab, "ex2-mtu")
    caught(v, "pod a still sends 1500-byte packets", "mtu = 1450", "MTU 1500")
    for n in (1, 2):
        vxlan.set_pod_mtu(lab.node(n), 1400)  # too careful: 1450 bytes no longer leave the pod
    caught(
        run(lab, "ex2-mtu"),
        "a 1450-byte DF ping from pod a to pod c failed",
        "message too long, mtu=1400",
        "set MTU 1450, not 1400",
    )
    for n in (1, 2):
        vxlan.set_pod_mtu(lab.node(n), 1450)
    v = run(lab, "ex2-mtu")
    assert v.passed, v.render()


# --- exercise 3: BGP -------------------------------------------------------------------------------
def test_ex3_bird_config_of_node1_passes_and_is_unencapsulated(lab):
    start_birds(lab, node1_config(lab))
    v = run(lab, "ex3-bgp")
    assert v.passed, v.render()
    assert "ICMP echo-request 10.244.1.2 -> 10.244.2.2 ttl 63" in v.summary


def test_ex3_wrong_as(lab):
    start_birds(
        lab, node1_config(lab).replace("local 192.168.1.11 as 64512", "local 192.168.1.11 as 64513")
    )
    caught(run(lab, "ex3-bgp"), "BGP session node1 -> node2 is not Established", "Bad peer AS")


def test_ex3_range_not_exported(lab):
    cfg = node1_config(lab).replace("route 10.244.1.0/24 blackhole;", "")
    start_birds(lab, cfg)
    caught(
        run(lab, "ex3-bgp"),
        "node2 has no BGP route to 10.244.1.0/24 (node1's pods)",
        "node1's BIRD has no route for 10.244.1.0/24 at all",
        "route 10.244.1.0/24 blackhole",
    )


# Where node1's config loses a pod range, and what the check must then name: the owner's
# export filter, node1's import, node1's kernel export. Each edit is one line of node1's
# config; the missing range is node1's own (announced) or node2's (learned).
LOST_ROUTES = {
    "bgp-export-none": (
        "export filter { calico_aggr(); if net ~ 10.244.0.0/16 then accept; reject; };",
        "export none;",
        "node2 has no BGP route to 10.244.1.0/24 (node1's pods)",
        "node1's BIRD has the route (10.244.1.0/24 blackhole [static1",
        "does not announce it to node2",
        "export filter { calico_aggr();",
    ),
    "import-none": (
        "gateway recursive;\n    import all;",
        "gateway recursive;\n    import none;",
        "node1 has no BGP route to 10.244.2.0/24 (node2's pods)",
        "node2 announces it to node1 (`birdc show route export Mesh_192_168_1_11` in node2",
        "node1's BIRD did not take it in",
        "`import all;`",
    ),
    "kernel-export-none": (
        "export filter calico_kernel_programming;",
        "export none;",
        "node1 has no BGP route to 10.244.2.0/24 (node2's pods)",
        "node1's BIRD knows it (`birdc show route 10.244.2.0/24`: 10.244.2.0/24 unicast "
        "[Mesh_192_168_1_12",
        "did not write it into node1's kernel",
        "export filter calico_kernel_programming;",
    ),
}


@pytest.mark.parametrize("mistake", LOST_ROUTES)
def test_ex3_each_place_a_route_is_lost_is_named(lab, mistake):
    old, new, *messages = LOST_ROUTES[mistake]
    cfg = node1_config(lab)
    assert old in cfg
    start_birds(lab, cfg.replace(old, new))
    caught(run(lab, "ex3-bgp"), *messages)


def test_ex3_config_that_does_not_parse(lab):
    with pytest.raises(bgp.BirdConfigError):
        start_birds(lab, node1_config(lab).replace("router id", "router-id"))
    caught(run(lab, "ex3-bgp"), "node1's BIRD config does not parse", "Nothing was started")


def test_ex3_flannel_left_in_place_is_encapsulated(lab):
    overlay_1_2(lab)
    for n in (2, 3, 1):
        bgp.setup_node(lab, lab.node(n), config=node1_config(lab) if n == 1 else None)
    caught(run(lab, "ex3-bgp"), "the traffic is still encapsulated", "VXLAN VNI 1")


# --- exercise 4: underlay ----------------------------------------------------------------------------
def test_ex4_underlay(lab):
    underlay.new_pod(lab, lab.node(1), "u1", "192.168.1.111")
    caught(run(lab, "ex4-underlay"), "pod u2 with address 192.168.1.121/32 does not exist")
    u2 = underlay.new_pod(lab, lab.node(2), "u2", "192.168.1.121")
    v = run(lab, "ex4-underlay")
    assert v.passed, v.render()
    lab.node(2).ns.run(["ip", "neigh", "del", "proxy", u2.ip, "dev", "eth0"])
    lab.node(1).ns.run(["ip", "neigh", "flush", "dev", "eth0"])
    caught(run(lab, "ex4-underlay"), "nobody on the node network answers for 192.168.1.121")


# --- break/fix -----------------------------------------------------------------------------------------
def breakfix_state(c: Cluster) -> None:
    start_birds(c, node1_config(c))
    vxlan.connect_nodes([c.node(1), c.node(3)], pod_mtu=False)


def test_breakfix_each_fault_breaks_and_its_repair_restores(lab):
    breakfix_state(lab)
    probe = __import__("grader.labs.lab03_breakfix", fromlist=["a_reaches_e"]).a_reaches_e
    ctx = CheckContext(LAB_ID, lab.prefix, tuple(lab.record.namespaces))
    assert probe(ctx).passed
    for fault in CATALOGUE.faults:
        fault.apply(lab.namespaces)
        assert fault.present(lab.namespaces), fault.id
        assert not probe(ctx).passed, fault.id
        fault.repair(lab.namespaces)
        assert not fault.present(lab.namespaces), fault.id
        v = probe(ctx)
        assert v.passed, f"{fault.id}: {v.render()}"


def test_breakfix_not_injected_then_injected_then_repaired(lab, monkeypatch):
    monkeypatch.setenv("K8SNET_LEARNER", "student-3")
    breakfix_state(lab)
    v = run(lab, "breakfix")
    assert not v.passed
    injected = inject(lab, CATALOGUE)
    v = run(lab, "breakfix")
    assert not v.passed and "not repaired yet" in v.summary
    assert v.journey
    for fault in injected.faults:
        fault.repair(lab.namespaces)
    v = run(lab, "breakfix")
    assert v.passed, v.render()
    # the journey crosses the node network wrapped, each hop in its true direction
    hops = {" ".join(line.split()[2:4]): line for line in v.journey.splitlines() if " ms " in line}
    assert "[in 192.168.1.11 -> 192.168.2.13 UDP" in hops["node1/eth0 out"], v.journey
    assert "VXLAN VNI 1" in hops["underlay/node1 in"] and "node3/flannel.1 in" in hops, v.journey


def test_breakfix_every_pair_a_learner_can_draw_is_injected_present_and_repairable(lab):
    """Every drawable pair on the shared lab: applied in draw order without error, both still
    present, then healed by both repairs. That the pair breaks pod a's path to pod e is not
    probed again (each fault alone does, above; a broken probe waits for its timeouts). All
    pairs were once tried with that probe too: none clashed, and none where repairing one fault
    alone heals the lab, so nothing is kept apart here."""
    breakfix_state(lab)
    ctx = CheckContext(LAB_ID, lab.prefix, tuple(lab.record.namespaces))
    assert a_reaches_e(ctx).passed
    found = {
        ids(d): p
        for d in drawable(CATALOGUE)
        if (p := problem(d, lab.namespaces, lambda: a_reaches_e(ctx).passed, False))
    }
    assert found == {}
