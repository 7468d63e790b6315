"""Lab 02's fault catalogue on a real two-node lab built by the reference implementation.

Each fault breaks the probe, the hints come in steps and never name the fault, and the
instructor's repair gets full marks; a learner's drawn pair is repaired and passes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from course.faults import Catalogue, Fault, draw, inject
from course.faults.lab02 import CATALOGUE
from course.podnet import bridge, routed
from course.topology import Cluster
from grader import breakfix
from grader.labs import CheckContext
from grader.labs.lab02_breakfix import CHECK, pods_and_nodes_talk
from tests.faultpairs import drawable, ids, problem

LAB = "02-bridge-vs-routed"


@pytest.fixture(autouse=True)
def _private_learner_file(monkeypatch, tmp_path):
    monkeypatch.setenv("K8SNET_STATE_DIR", str(tmp_path / "state"))


@pytest.fixture(scope="module")
def lab02() -> Iterator[Cluster]:
    """What the solution's exercises 1 and 2 build: node1 bridged, node2 routed."""
    with Cluster(
        LAB, nodes=2, pods_per_node=2, pod_network=None, cross_node=None, router=True
    ) as c:
        bridge.setup_node(c.node(1))
        routed.setup_node(c.node(2))
        for pod in c.node(1).pods:
            bridge.add_pod(c.node(1), pod)
        for pod in c.node(2).pods:
            routed.add_pod(c.node(2), pod)
        yield c
    shutil.rmtree(breakfix.ATTEMPTS_DIR / c.prefix, ignore_errors=True)


def _ctx(c: Cluster) -> CheckContext:
    return CheckContext(LAB, c.prefix, tuple(c.record.namespaces))


def test_the_working_lab_passes_with_a_journey(lab02):
    verdict = pods_and_nodes_talk(_ctx(lab02))
    assert verdict.passed, verdict.render()
    assert "10.244.2.3" in (verdict.journey or "")


def test_two_learners_differ_and_one_learner_is_stable():
    picks = {tuple(f.id for f in draw(CATALOGUE, f"learner:s{i}")) for i in range(12)}
    assert len(picks) > 3
    assert draw(CATALOGUE, "learner:bo") == draw(CATALOGUE, "learner:bo")


@pytest.mark.parametrize("fault", CATALOGUE.faults, ids=lambda f: f.id)
def test_each_fault_breaks_the_lab_and_its_repair_passes(lab02, fault):
    single = Catalogue(f"t-lab02/{fault.id}", (fault,), k=1)
    check = breakfix.check(single, pods_and_nodes_talk)
    ctx = _ctx(lab02)
    inject(lab02, single)
    assert fault.present is None or fault.present(lab02.namespaces)
    first = check(ctx)
    assert not first.passed, f"{fault.id} did not break the lab"
    assert fault.title not in first.render() and fault.id not in first.render()
    assert "paths fail" in first.summary
    assert fault.where in first.hint and fault.look_at not in first.hint
    assert fault.repair is not None
    fault.repair(lab02.namespaces)
    assert fault.present is None or not fault.present(lab02.namespaces)
    repaired = check(ctx)
    assert repaired.passed, repaired.render()


def test_the_second_failed_attempt_says_what_to_look_at(lab02):
    fault = CATALOGUE.fault("node2-forwarding-off")
    single = Catalogue("t-lab02/escalation", (fault,), k=1)
    check = breakfix.check(single, pods_and_nodes_talk)
    inject(lab02, single)
    try:
        first, second = check(_ctx(lab02)), check(_ctx(lab02))
        assert fault.look_at not in first.hint and fault.look_at in second.hint
        assert "failed attempt 2" in second.summary
        assert "node2" in (second.journey or "")  # where the packet stopped
    finally:
        fault.repair(lab02.namespaces)  # type: ignore[misc]


def test_a_learners_two_faults_then_the_real_check(lab02, monkeypatch):
    monkeypatch.setenv("K8SNET_LEARNER", "student-3")
    drawn = inject(lab02, CATALOGUE).faults
    assert len(drawn) == 2
    assert not CHECK(_ctx(lab02)).passed
    for fault in drawn:
        fault.repair(lab02.namespaces)  # type: ignore[misc]
    verdict = CHECK(_ctx(lab02))
    assert verdict.passed, verdict.render()


def test_every_pair_a_learner_can_draw_on_one_node_is_injected_present_and_repairable(lab02):
    """Every drawable pair of faults on the same node (faults in different nodes' namespaces
    cannot undo each other), on the shared lab: applied in draw order without error, both
    still present, then healed by both repairs. That the pair breaks the lab is not probed
    again (each fault alone does, above; a broken probe waits for its timeouts). All 28
    pairs were tried once, with the probe: only pod d's cali end down with node2's missing
    route to pod d clashed (the link going down took the route with it), kept apart now."""
    ctx = _ctx(lab02)
    works = lambda: pods_and_nodes_talk(ctx).passed  # noqa: E731
    same_node = [d for d in drawable(CATALOGUE) if len({_node(f) for f in d}) == 1]
    found = {ids(d): p for d in same_node if (p := problem(d, lab02.namespaces, works, False))}
    assert found == {}
    assert len(same_node) == 12


def _node(fault: Fault) -> str:
    """The node whose namespaces a lab 02 fault touches (pod a, b and the bridge: node1)."""
    node1 = {"bridge-port-b-unplugged", "cni0-gateway-missing", "pod-a-default-missing"}
    return "node1" if fault.id in node1 else "node2"
