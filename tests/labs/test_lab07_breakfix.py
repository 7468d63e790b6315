"""Lab 07's break/fix catalogue against the real lab: each fault alone breaks the NodePort path
(or hairpin, or pod-to-Service across the bridge), the first hint says where the packet stops
and never names the fault, the second says where to look, and the repair gets full marks.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import replace

import pytest

from course import nodeport
from course.faults import Catalogue, inject
from course.faults.lab07 import CATALOGUE
from course.nodeport import NodePortLab
from course.topology import Cluster
from grader import breakfix
from grader.labs import CheckContext
from grader.labs.lab07 import LAB, LAB_ID, nodeport_path_works
from tests.faultpairs import drawable, ids, problem
from tests.labs.test_lab07_checks import RIGHT, Lab07

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def lab() -> Iterator[NodePortLab]:
    """The notebook's state at exercise 5: the learner's masquerade rules, hairpin on."""
    with Cluster(LAB_ID, **nodeport.TOPOLOGY) as c:
        lab = nodeport.build(c, masquerade_rules=False)
        t = Lab07(lab)
        t.masquerade(RIGHT)
        t.hairpin(True)
        yield lab
        lab.dns.stop()
    shutil.rmtree(breakfix.ATTEMPTS_DIR / c.prefix, ignore_errors=True)


def ctx(lab: NodePortLab) -> CheckContext:
    c = lab.cluster
    return CheckContext(LAB_ID, c.prefix, tuple(c.record.namespaces))


def test_the_working_lab_passes_and_nothing_injected_scores_nothing(lab: NodePortLab) -> None:
    verdict = LAB.check("ex5-breakfix").run(ctx(lab))
    assert not verdict.passed and "never injected" in verdict.summary
    ok = nodeport_path_works(ctx(lab))
    assert ok.passed, ok.render()


@pytest.mark.parametrize("fault", CATALOGUE.faults, ids=lambda f: f.id)
def test_each_fault_breaks_the_path_and_its_repair_gets_full_marks(lab, fault) -> None:
    single = Catalogue(f"t-07/{fault.id}", (fault,), k=1, story=CATALOGUE.story)
    check = breakfix.check(single, nodeport_path_works)
    roles = lab.cluster.namespaces
    inject(lab.cluster, single)
    try:
        assert fault.present(roles)
        first = check(ctx(lab))
        text = first.render()
        print(text)
        assert not first.passed, text
        assert fault.title not in text and fault.id not in text
        assert fault.where in first.hint and fault.look_at not in first.hint
        assert "not repaired yet" in first.summary
        # when pod a's own path fails, the verdict shows the hairpin loop as pod a saw it
        loop = "journey of TCP SYN from pod a to its own Service"
        assert (loop in first.journey) == (fault.id == "hairpin-off"), first.journey
    finally:
        fault.repair(roles)  # type: ignore[misc]
    assert not fault.present(roles)  # type: ignore[misc]
    repaired = check(ctx(lab))
    assert repaired.passed, repaired.render()


def test_the_second_attempt_says_where_to_look(lab: NodePortLab) -> None:
    fault = CATALOGUE.fault("mark-bit-wrong")
    single = replace(CATALOGUE, name="t-07/second", faults=(fault,), k=1)
    check = breakfix.check(single, nodeport_path_works)
    inject(lab.cluster, single)
    try:
        first, second = check(ctx(lab)), check(ctx(lab))
    finally:
        fault.repair(lab.cluster.namespaces)  # type: ignore[misc]
    assert fault.look_at not in first.hint and fault.look_at in second.hint
    assert "the client got a SYN-ACK from 10.244.2." in second.observed


def test_every_pair_a_learner_can_draw_is_injected_present_and_repairable(lab: NodePortLab) -> None:
    """Every drawable pair on the shared lab: applied in draw order without error, both still
    present, then healed by both repairs. That the pair breaks the NodePort path is not probed
    again (each fault alone does, above; a broken probe waits for its timeouts). All pairs were
    once tried with that probe too: none clashed, and none where repairing one fault alone heals
    the lab, so nothing is kept apart here."""
    found = {
        ids(d): p
        for d in drawable(CATALOGUE)
        if (
            p := problem(
                d, lab.cluster.namespaces, lambda: nodeport_path_works(ctx(lab)).passed, False
            )
        )
    }
    assert found == {}


def test_the_nodeport_jump_put_back_without_addrtype_is_not_a_repair(lab: NodePortLab) -> None:
    """`iptables -t nat -A KUBE-SERVICES -j KUBE-NODEPORTS` brings the client's path back, but
    node1 now takes every packet to port 30080, whatever its destination: pod dns's
    connection to node2:30080 is translated by node1 (its conntrack entry's reply side comes
    from a pod), and the check says so. The jump put back *first* in the chain, with its addrtype match, is a
    repair: in this lab no rule of KUBE-SERVICES can match a packet for a node's own address
    (no Service has an external IP or a load-balancer IP), so the order changes no packet,
    and only packets decide."""
    fault = CATALOGUE.fault("nodeport-jump-missing")
    single = replace(CATALOGUE, name="t-07/addrtype", faults=(fault,), k=1)
    check = breakfix.check(single, nodeport_path_works)
    roles = lab.cluster.namespaces
    node1 = roles["node1"]
    inject(lab.cluster, single)
    try:
        node1.run(["iptables", "-t", "nat", "-A", "KUBE-SERVICES", "-j", "KUBE-NODEPORTS"])
        assert not fault.present(roles)  # a jump is there: the catalogue cannot tell
        v = check(ctx(lab))
        assert not v.passed, v.render()
        assert "pod dns's connection to node2:30080 is translated by node1" in v.summary
        assert "node1's conntrack: tcp" in v.observed and "src=10.244." in v.observed
        node1.run(["iptables", "-t", "nat", "-D", "KUBE-SERVICES", "-j", "KUBE-NODEPORTS"])
        first = ["-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-NODEPORTS"]
        node1.run(["iptables", "-t", "nat", "-I", "KUBE-SERVICES", "1", *first])
        v = check(ctx(lab))
        assert v.passed, v.render()
    finally:
        lab.sync()  # kube-proxy's KUBE-SERVICES again (its restore rewrites the whole chain)
    assert (
        node1.run(["iptables", "-t", "nat", "-S", "KUBE-SERVICES"])
        .stdout.rstrip()
        .endswith("-j KUBE-NODEPORTS")
    )
