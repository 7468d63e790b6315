"""Lab 05's checks against real namespaces: the reference rules pass, and every known
mistake fails the check meant for it, with the message meant for it. No notebook.

The rules are what a learner types in the notebook's shell cells (`iptables` inside node1);
a mutant is those rules as a learner gets them wrong. One cluster for the module; each
test starts from node1's tables flushed back to the lab's setup state.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterator

import pytest

from course.kernel import Netns
from course.labs import topology
from course.netfilter.lab import (
    BACKEND_IP,
    BLOCKED_IP,
    CLIENT_IP,
    LAB_ID,
    MASQUERADE,
    VIP,
    VIP_PORT,
    WEB_PORT,
    prepare,
)
from course.topology import Cluster
from grader.labs import CheckContext
from grader.verdict import Verdict
from tests.faultpairs import drawable, ids, problem
from tests.nbharness import run_check
from tests.nbharness import verdict_caught as caught

pytestmark = pytest.mark.slow
DNAT = f"-d {VIP} -p tcp --dport {VIP_PORT} -j DNAT --to-destination {BACKEND_IP}:{WEB_PORT}"
COUNT = [f"-t {t} -A PREROUTING -s {CLIENT_IP} -p tcp --dport {WEB_PORT}" for t in ("raw", "mangle", "nat")]  # fmt: skip
BLOCK = f"-A FORWARD -s {BLOCKED_IP} -d {BACKEND_IP} -p tcp --dport {WEB_PORT} -j DROP"


class Lab05:
    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.node: Netns = cluster.node(1).ns

    def reset(self) -> None:
        """node1's tables as the setup cell leaves them: every chain, no rule of the learner."""
        for table in ("raw", "mangle", "nat", "filter"):
            self.node.run(["iptables", "-t", table, "-F"])
        self.node.run(["iptables", "-P", "FORWARD", "ACCEPT"])
        self.rules(f"-t nat -A POSTROUTING {MASQUERADE}")
        self.node.run(["conntrack", "-F"], check=False)

    def rules(self, *lines: str) -> None:
        for line in lines:
            self.node.run(["iptables", *shlex.split(line)])

    def run(self, check_id: str, **answers: object) -> Verdict:
        return run_check(LAB_ID, self.cluster, check_id, **answers)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab05]:
    with Cluster(LAB_ID, **topology(LAB_ID)) as c:
        prepare(c)
        yield Lab05(c)


@pytest.fixture
def fresh(lab: Lab05) -> Lab05:
    lab.reset()
    return lab


# --- question 1 ---------------------------------------------------------------------------------
FORWARD = ["raw PREROUTING", "mangle PREROUTING", "nat PREROUTING", "mangle FORWARD",
           "filter FORWARD", "security FORWARD", "mangle POSTROUTING", "nat POSTROUTING"]  # fmt: skip
TO_NODE = ["raw PREROUTING", "mangle PREROUTING", "nat PREROUTING", "mangle INPUT",
           "filter INPUT", "nat INPUT", "security INPUT"]  # fmt: skip
FROM_NODE = ["raw OUTPUT", "mangle OUTPUT", "nat OUTPUT", "filter OUTPUT", "security OUTPUT",
             "mangle POSTROUTING", "nat POSTROUTING"]  # fmt: skip


def test_predictions_right(fresh: Lab05) -> None:
    for check_id, name, answer in (
        ("q1-forward", "forwarded", FORWARD),
        ("q1-local-in", "to_node", TO_NODE),
        ("q1-local-out", "from_node", FROM_NODE),
    ):
        v = fresh.run(check_id, **{name: answer})
        assert v.passed, v.render()
        assert "filter" in v.journey  # the real trace rides along


def test_prediction_in_the_wrong_order_shows_the_trace_beside_it(fresh: Lab05) -> None:
    swapped = [FORWARD[0], FORWARD[2], FORWARD[1], *FORWARD[3:]]  # nat before mangle
    v = fresh.run("q1-forward", forwarded=swapped)
    caught(v, "differs from the kernel's at step 2", "<== first difference", "the kernel traced")
    legacy = [*TO_NODE[:5], "security INPUT", "nat INPUT"]  # the ip_tables (legacy) order
    caught(fresh.run("q1-local-in", to_node=legacy), "at step 6")
    caught(fresh.run("q1-local-out", from_node="raw OUTPUT"), "no usable answer")


# --- exercise 2 ---------------------------------------------------------------------------------
def test_counters_right(fresh: Lab05) -> None:
    fresh.rules(*COUNT)
    v = fresh.run("ex2-counters")
    assert v.passed, v.render()
    assert "nat PREROUTING +3" in v.summary


def test_counters_in_the_wrong_table(fresh: Lab05) -> None:
    fresh.rules(COUNT[0], COUNT[1], f"-A FORWARD -s {CLIENT_IP} -p tcp --dport {WEB_PORT}")
    caught(fresh.run("ex2-counters"), "no rule in nat PREROUTING saw pod a's packets")


# --- exercise 3 ---------------------------------------------------------------------------------
def test_dnat_in_prerouting_and_output(fresh: Lab05) -> None:
    fresh.rules(f"-t nat -A PREROUTING {DNAT}", f"-t nat -A OUTPUT {DNAT}")
    assert fresh.run("ex3-dnat-pod").passed
    assert fresh.run("ex3-dnat-node").passed


def test_dnat_only_in_prerouting_misses_the_node(fresh: Lab05) -> None:
    fresh.rules(f"-t nat -A PREROUTING {DNAT}")
    assert fresh.run("ex3-dnat-pod").passed
    caught(
        fresh.run("ex3-dnat-node"),
        "node1's connection to 10.96.0.50:80 was not translated",
        "nat OUTPUT",
        "never pass PREROUTING",
    )


def test_no_dnat_and_wrong_port(fresh: Lab05) -> None:
    caught(fresh.run("ex3-dnat-pod"), "was not translated", "nat PREROUTING")
    fresh.rules(f"-t nat -A PREROUTING {DNAT.replace(f':{WEB_PORT}', f':{VIP_PORT}')}")
    caught(fresh.run("ex3-dnat-pod"), "the DNAT matched, but pod b's server did not answer")


# --- exercise 4 ---------------------------------------------------------------------------------
@pytest.fixture
def served(fresh: Lab05) -> Lab05:
    fresh.rules(f"-t nat -A PREROUTING {DNAT}")
    return fresh


def test_block_after_dnat(served: Lab05) -> None:
    served.rules(BLOCK)
    v = served.run("ex4-block")
    assert v.passed, v.render()


def test_block_on_the_service_address_never_matches(served: Lab05) -> None:
    served.rules(f"-A FORWARD -s {BLOCKED_IP} -d {VIP} -p tcp --dport {VIP_PORT} -j DROP")
    caught(served.run("ex4-block"), "names the Service address", f"{BACKEND_IP}:{WEB_PORT}")


def test_drop_in_input_for_forwarded_traffic(served: Lab05) -> None:
    served.rules(BLOCK.replace("-A FORWARD", "-A INPUT"))
    caught(served.run("ex4-block"), "your DROP is in filter INPUT", "never INPUT")


def test_drop_in_the_wrong_table(served: Lab05) -> None:
    served.rules(BLOCK.replace("-A FORWARD", "-t mangle -A FORWARD"))
    caught(served.run("ex4-block"), "not by a DROP in filter FORWARD", "drop in mangle FORWARD",
           "mangle is for changing packets", "filtering is the filter table's job")  # fmt: skip


def test_accept_before_the_drop(served: Lab05) -> None:
    served.rules("-A FORWARD -s 10.244.1.0/24 -j ACCEPT", BLOCK)
    caught(served.run("ex4-block"), "was accepted by filter FORWARD rule 1", "put the DROP first")


def test_block_too_broad(served: Lab05) -> None:
    served.rules(f"-A FORWARD -d {BACKEND_IP} -j DROP")
    caught(served.run("ex4-block"), "pod c is blocked, but so is pod a")


# --- questions ------------------------------------------------------------------------------------
def test_questions(fresh: Lab05) -> None:
    assert fresh.run("q2-match", q_match="b").passed
    caught(fresh.run("q2-match", q_match="a"), "q_match")
    assert fresh.run("q3-nat-packets", q_nat_packets=1).passed
    caught(fresh.run("q3-nat-packets", q_nat_packets=7), "q_nat_packets")
    assert fresh.run("q4-refused", q_refused="c").passed


# --- break/fix ------------------------------------------------------------------------------------
# What service_works says first for each fault alone (the symptom, never the fault).
BROKEN = {
    "dnat-output-missing": "node1 does not get 'web'",
    "drop-in-input": "pod c is not dropped in filter FORWARD",
    "accept-before-drop": "pod c is not dropped in filter FORWARD",
    "dnat-wrong-port": "pod a does not get 'web'",
    "masquerade-in-prerouting": "pod a does not get 'outside' from 192.168.1.1:80",
    "forward-policy-drop": "pod a does not get 'web'",
}


def test_each_fault_breaks_the_service_and_its_repair_fixes_it(fresh: Lab05) -> None:
    from course.faults.lab05 import CATALOGUE, WORKING_RULES
    from grader.labs.lab05 import service_works

    fresh.rules(*WORKING_RULES)
    roles = fresh.cluster.namespaces
    c = fresh.cluster
    ctx = CheckContext(LAB_ID, c.prefix, tuple(c.record.namespaces), {})
    assert service_works(ctx).passed
    for fault in CATALOGUE.faults:
        assert fault.present is not None and fault.repair is not None
        assert not fault.present(roles), fault.id
        fault.apply(roles)
        assert fault.present(roles), fault.id
        v = service_works(ctx)
        assert not v.passed, f"{fault.id} did not break the Service:\n{v.render()}"
        assert BROKEN[fault.id] in v.summary, v.render()
        assert fault.id not in v.render()
        fault.repair(roles)
        assert not fault.present(roles), fault.id
        assert service_works(ctx).passed, fault.id


def test_breakfix_check_hints_then_full_marks(fresh: Lab05, monkeypatch) -> None:
    from course.faults import draw, inject
    from course.faults.lab05 import CATALOGUE, WORKING_RULES

    monkeypatch.setenv("K8SNET_LEARNER", "student-05")
    c = fresh.cluster
    fresh.rules(*WORKING_RULES)
    caught(fresh.run("breakfix"), "never injected")
    try:
        injected = inject(c, CATALOGUE)
        assert len(injected.faults) == CATALOGUE.k
        first = fresh.run("breakfix")
        assert not first.passed and "Where it stops:" in first.hint
        assert "Look at" not in first.hint
        second = fresh.run("breakfix")
        assert "Look at" in second.hint
        for fault in draw(CATALOGUE, "learner:student-05"):
            assert fault.repair is not None
            fault.repair(c.namespaces)
        done = fresh.run("breakfix")
        assert done.passed and done.summary.startswith("repaired")
    finally:
        c.record.faults = {}
        c.record.save()


def test_every_pair_a_learner_can_draw_is_injected_present_and_repairable(fresh: Lab05) -> None:
    """Every drawable pair on the shared lab: applied in draw order without error, both still
    present, then healed by both repairs. That the pair breaks the Service is not probed again
    (each fault alone does, above; a broken probe waits for its timeouts). All pairs were once
    tried with that probe too: none clashed, and none where repairing one fault alone heals the
    lab, so nothing is kept apart here."""
    from course.faults.lab05 import CATALOGUE, WORKING_RULES
    from grader.labs.lab05 import service_works

    fresh.rules(*WORKING_RULES)
    c = fresh.cluster
    ctx = CheckContext(LAB_ID, c.prefix, tuple(c.record.namespaces), {})
    assert service_works(ctx).passed
    found = {
        ids(d): p
        for d in drawable(CATALOGUE)
        if (p := problem(d, c.namespaces, lambda: service_works(ctx).passed, False))
    }
    assert found == {}
