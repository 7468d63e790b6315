"""Lab 07's checks against the real lab: right answers pass, each mutant of the issue is caught
by the check meant for it, with a message that names what the client or the pod saw.

The learner's part (KUBE-MARK-MASQ and KUBE-POSTROUTING, the web-local and web-headless
Services, hairpin mode on pod a's port) is played here by real `iptables` commands and
manifests; kube-proxy (course.kubeproxy, `masquerade_rules=False` as in the notebook)
writes everything else on both nodes. No notebook, no nbgrader.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from course import nodeport
from course.nodeport import NodePortLab
from course.topology import Cluster
from grader.labs.lab07 import LAB_ID
from grader.verdict import Verdict
from tests.nbharness import run_check
from tests.nbharness import verdict_caught as assert_caught

pytestmark = pytest.mark.slow
RIGHT = [
    "-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000",
    "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
    "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
    "-A KUBE-POSTROUTING -m comment --comment 'kubernetes service traffic requiring SNAT' "
    "-j MASQUERADE --random-fully",
]
WEB_LOCAL = """
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.21
  selector: {app: web}
  externalTrafficPolicy: POLICY
  ports: [{name: http, protocol: TCP, port: 80, targetPort: http, nodePort: 30081}]
"""
HEADLESS = """
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: default}
spec:
  clusterIP: CIP
  selector: {app: web}
  ports: [{name: http, protocol: TCP, port: 8080, targetPort: http}]
"""


@dataclasses.dataclass
class Lab07:
    lab: NodePortLab

    @property
    def cluster(self) -> Cluster:
        return self.lab.cluster

    def masquerade(self, rules: list[str], on: tuple[int, ...] = (1, 2)) -> None:
        """The learner's shell cell: flush both chains, then `iptables -t nat` per rule on
        the nodes `on` (the exercise asks for both)."""
        for node in self.cluster.nodes:
            for chain in ("KUBE-MARK-MASQ", "KUBE-POSTROUTING"):
                node.ns.run(["iptables", "-t", "nat", "-F", chain])
            for rule in rules if node.index in on else []:
                node.ns.run(["bash", "-c", f"iptables -t nat {rule}"])
            node.ns.run(["conntrack", "-F"], check=False)

    def hairpin(self, on: bool) -> None:
        a = self.cluster.pod("a")
        assert a.host_ifname is not None
        a.node.ns.bridge_port(a.host_ifname, hairpin=on)

    def run(self, check_id: str) -> Verdict:
        return run_check(LAB_ID, self.cluster, check_id)


@pytest.fixture(scope="module")
def lab07() -> Iterator[Lab07]:
    with Cluster(LAB_ID, **nodeport.TOPOLOGY) as c:
        lab = nodeport.build(c, masquerade_rules=False)
        t = Lab07(lab)
        t.hairpin(False)  # the notebook's node1 starts with hairpin mode off on pod a's port
        yield t
        lab.dns.stop()


# --- exercise 1 ------------------------------------------------------------------------------------
def test_without_any_masquerade_the_client_sees_the_pod(lab07: Lab07) -> None:
    lab07.masquerade([])
    v = lab07.run("ex1-masquerade")
    assert_caught(v, "KUBE-MARK-MASQ marks nothing", "got the SYN from 203.0.113.10",
                  "the client got a SYN-ACK from 10.244.2.")  # fmt: skip
    # the journey under the verdict: DNAT in node1, no SNAT, the reply around node1
    assert "DNAT 192.168.1.11:30080 -> 10.244.2." in v.journey, v.journey
    assert "SNAT" not in v.journey and "node2/eth0       out 10.244.2." in v.journey


def test_right_rules_pass(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT)
    v = lab07.run("ex1-masquerade")
    assert v.passed and "the pods saw 192.168.1.11" in v.summary
    assert "through node2 they saw 10.244.2.1" in v.summary
    # the journey under the verdict: node1's DNAT and SNAT, the reply back through node1
    assert "DNAT 192.168.1.11:30080 -> 10.244.2." in v.journey, v.journey
    assert "SNAT 203.0.113.10:" in v.journey and "-> 192.168.1.11:" in v.journey
    assert "reverse NAT (conntrack)" in v.journey and "the reply came back to client" in v.journey
    assert "digraph journey" in v.journey_dot


def test_rules_on_node1_only(lab07: Lab07) -> None:
    """Through node1 all is well; through node2 the pods see the client: node2 has no
    masquerade (the connection still works there, since node2 is the pods' own gateway)."""
    lab07.masquerade(RIGHT, on=(1,))
    assert_caught(lab07.run("ex1-masquerade"), "node2: KUBE-MARK-MASQ marks nothing",
                  "saw it from 203.0.113.10", "write the two chains on node2 too",
                  "192.168.1.12:30080")  # fmt: skip


def test_no_masquerade_rule_on_node2_only(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT, on=(1,))
    lab07.cluster.node(2).ns.run(
        ["bash", "-c", " && ".join(f"iptables -t nat {r}" for r in RIGHT[:3])]
    )
    assert_caught(lab07.run("ex1-masquerade"), "node2: KUBE-POSTROUTING never masquerades",
                  "saw it from 203.0.113.10")  # fmt: skip


def test_no_mark_masq_jump_in_kube_ext(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT)
    node1 = lab07.cluster.node(1).ns
    ext = next(c for c in node1.iptables_save("nat").split() if c.startswith("KUBE-EXT-"))
    node1.run(["iptables", "-t", "nat", "-D", ext, "1"])
    try:
        v = lab07.run("ex1-masquerade")
        assert_caught(v, "KUBE-EXT does not send NodePort traffic to KUBE-MARK-MASQ",
                      "the client got a SYN-ACK from 10.244.2.")  # fmt: skip
    finally:
        lab07.lab.sync()


def test_no_masquerade_rule(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT[:3])
    assert_caught(lab07.run("ex1-masquerade"), "KUBE-POSTROUTING never masquerades",
                  "got the SYN from 203.0.113.10")  # fmt: skip


def test_mark_bit_wrong_in_kube_mark_masq(lab07: Lab07) -> None:
    lab07.masquerade([RIGHT[0].replace("0x4000", "0x8000"), *RIGHT[1:]])
    assert_caught(lab07.run("ex1-masquerade"), "KUBE-MARK-MASQ sets the mark 0x8000",
                  "the client got a SYN-ACK from 10.244.2.")  # fmt: skip


def test_mark_bit_wrong_everywhere_works_but_is_not_kube_proxys(lab07: Lab07) -> None:
    lab07.masquerade([r.replace("0x4000", "0x8000") for r in RIGHT])
    v = lab07.run("ex1-masquerade")
    assert_caught(v, "KUBE-MARK-MASQ sets the mark 0x8000", "saw it from 192.168.1.11")


def test_no_return_masquerades_pod_to_pod(lab07: Lab07) -> None:
    lab07.masquerade([RIGHT[0], *RIGHT[2:]])
    # node2 masquerades too now: the pods see node2's cni0 address, not node1's
    assert_caught(lab07.run("ex1-masquerade"), "does not let unmarked packets through untouched",
                  "saw it from 10.244.2.1")  # fmt: skip


def test_no_xor_mark(lab07: Lab07) -> None:
    lab07.masquerade([RIGHT[0], RIGHT[1], RIGHT[3]])
    assert_caught(lab07.run("ex1-masquerade"), "does not clear the mark")


# --- exercise 2 ------------------------------------------------------------------------------------
def test_local_policy(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT)
    assert_caught(lab07.run("ex2-local"), "nothing answers on node2:30081")
    lab07.lab.apply(WEB_LOCAL.replace("POLICY", "Cluster"))
    assert_caught(lab07.run("ex2-local"), "the pods do not see the client's address",
                  "saw it from 10.244.2.1", "node2 masqueraded")  # fmt: skip
    lab07.lab.apply(WEB_LOCAL.replace("POLICY", "Local"))
    v = lab07.run("ex2-local")
    assert v.passed and "has no local endpoints" in v.observed
    node1 = lab07.cluster.node(1).ns
    node1.run(["iptables", "-F", "KUBE-EXTERNAL-SERVICES"])  # the DROP rule gone
    assert_caught(lab07.run("ex2-local"), "refuses web-local connections instead of dropping",
                  "TCP RST from 192.168.1.11")  # fmt: skip
    lab07.lab.sync()


# --- exercise 3 ------------------------------------------------------------------------------------
def test_hairpin_three_ways(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT)
    lab07.hairpin(False)
    v = lab07.run("ex3-hairpin")
    print(v.render())
    assert_caught(v, "the SYN never came back into pod a", "hairpin")
    assert "outcome: the SYN never came back into pod a" in v.journey
    lab07.hairpin(True)
    node1 = lab07.cluster.node(1).ns
    sep = next(
        ln.split()[1]
        for ln in node1.iptables_save("nat").splitlines()
        if "-s 10.244.1.2/32" in ln and ln.endswith("-j KUBE-MARK-MASQ")
    )
    node1.run(["iptables", "-t", "nat", "-D", sep, "1"])
    v = lab07.run("ex3-hairpin")
    print(v.render())
    assert_caught(v, "pod a answered itself directly", "from pod a (10.244.1.2)", "UNREPLIED")
    assert "DNAT 10.96.0.30:80 -> 10.244.1.2:8080 in node1" in v.journey
    assert "SNAT" not in v.journey and "answer never passed node1" in v.journey
    lab07.lab.sync()
    v = lab07.run("ex3-hairpin")
    print(v.render())
    assert v.passed and "saw 10.244.1.1" in v.summary
    # the loop, drawn from pod a's eth0: out to the Service, back in from node1's cni0
    assert "SNAT 10.244.1.2:" in v.journey and "-> 10.244.1.1:" in v.journey
    assert "reverse NAT (conntrack)" in v.journey and "the loop closed" in v.journey
    assert "digraph journey" in v.journey_dot


# --- exercise 4 ------------------------------------------------------------------------------------
def test_headless(lab07: Lab07) -> None:
    lab07.masquerade(RIGHT)
    kp = lab07.lab.kube_proxy
    kp.update_pod(dataclasses.replace(kp.pod("a"), labels={"pod": "a", "app": "web"}))
    lab07.lab.sync()
    assert_caught(lab07.run("ex4-headless"), "does not resolve to the web pods",
                  "no A record", "apply the Service web-headless")  # fmt: skip
    lab07.lab.apply(HEADLESS.replace("CIP", "10.96.0.22"))
    assert_caught(lab07.run("ex4-headless"), "node1 has kube-proxy rules for web-headless",
                  "10.96.0.22")  # fmt: skip
    lab07.lab.apply(HEADLESS.replace("CIP", "None"))
    v = lab07.run("ex4-headless")
    assert v.passed and "pod c (10.244.2.3)" in v.observed
    assert "pod c saw it from 10.244.1.3" in v.observed and "no translation" in v.observed
    # node1 masquerades everything (no RETURN for unmarked packets): not direct any more
    lab07.masquerade([RIGHT[0], *RIGHT[2:]], on=(1,))
    assert_caught(lab07.run("ex4-headless"), "connections to the pods' own addresses are not "
                  "direct", "saw it from 192.168.1.11", "-j RETURN")  # fmt: skip
    lab07.masquerade(RIGHT)
