"""Lab 02 end to end through the real `nbgrader autograde`: the solution gets full marks, the
release gets nothing, and each known wrong answer loses exactly the points of the check meant to
catch it, with the message meant for it.

Bridge and routed mode live on different nodes, so one mutant notebook can carry one bridge
mistake and one routed mistake at once; each is caught independently.
"""

from __future__ import annotations

import pytest

from tests.nbharness import (
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_scores,
    assert_zero,
    drop,
    edit,
    lab_course,
)

pytestmark = pytest.mark.slow
LAB = "02-bridge-vs-routed"


course = lab_course(LAB)


EXERCISES = {"check-ex1-switched": 3, "check-ex1-gateway": 2, "check-ex2-routed": 3}


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution(), feedback=True)
    assert_full_marks(result)
    assert result.max_score == 18
    assert "TTL 63" in result.cell_text("check-ex2-routed")
    assert "TTL 64" in result.cell_text("check-ex1-switched")
    assert "is routed: d saw source MAC ee:ee:ee:ee:ee:ee" in result.feedback_html


def test_release_gets_zero(course: GradingCourse) -> None:
    result = course.grade("release", course.release())
    assert_zero(result)
    assert_caught(result, "check-ex1-switched", "has no cable to node1")
    assert_caught(result, "check-ex2-routed", "has no cable to node2")
    assert_caught(result, "check-q1", "no answer given")
    assert_caught(result, "check-breakfix", "never injected")


def test_unplugged_port_and_proxy_arp_off(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex1-solution": drop(course, "ex1-solution", r"set_master"),
            "ex2-solution": drop(course, "ex2-solution", r"proxy_arp"),
        }
    )
    result = course.grade("mutant-port-proxyarp", nb)
    assert_caught(result, "check-ex1-switched", "is not a port of cni0")
    assert_caught(result, "check-ex1-gateway", "is not a port of cni0")
    assert_caught(result, "check-ex2-routed", "went unanswered: proxy ARP is off on cali")
    assert_caught(result, "check-ex2-node", "proxy ARP is off")
    assert result.cells["check-q1"].score == 1


def test_no_default_route_and_forwarding_off(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex1-solution": drop(course, "ex1-solution", r"add_route\(\"0\.0\.0\.0/0\""),
            "ex2-solution": drop(course, "ex2-solution", r"ip_forward"),
        }
    )
    result = course.grade("mutant-default-forward", nb)
    assert_scores(result, {"check-ex1-switched": 3, "check-ex1-gateway": 0})
    assert_caught(result, "check-ex1-gateway", "pod a (10.244.1.2) has no default route")
    assert_caught(result, "check-ex2-routed", "the node does not forward")


def test_gateway_missing_and_route_missing(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex1-solution": drop(course, "ex1-solution", r"add_address\(\"cni0\""),
            "ex2-solution": drop(course, "ex2-solution", r"node\.ns\.add_route"),
        }
    )
    result = course.grade("mutant-gateway-route", nb)
    assert_scores(result, {"check-ex1-switched": 3, "check-ex1-gateway": 0})
    assert_caught(result, "check-ex1-gateway", "cni0 has no gateway address 10.244.1.1")
    assert_caught(result, "check-ex2-routed", "node2 has no route to 10.244.2.3")
    assert_caught(result, "check-ex2-node", "node2 has no route to 10.244.2.2")


def test_pod_address_24_and_wrong_answers(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex2-solution": edit(
                course, "ex2-solution", '/32")\n    pod.ns.up', '/24")\n    pod.ns.up'
            ),
            "answer-q1": 'q1 = "bridge"',
            "answer-q3": 'q3 = {"bridge": "b", "routed": "a"}',
        }
    )
    result = course.grade("mutant-slash24", nb)
    assert_scores(result, {**EXERCISES, "check-ex2-routed": 0, "check-q1": 0, "check-q3": 0})
    assert_caught(result, "check-ex2-routed", "ARPs for its peer 10.244.2.3 directly")
    assert_caught(result, "check-q1", "q1 = 'bridge'")
    assert_caught(result, "check-q1", "why not 'bridge': a bridge is a switch")
    assert_caught(result, "check-q3", "bridge = 'b': per-pod /32 routes")
    assert result.cells["check-ex2-node"].score == 2


SHELL_EX2 = """%%ns node2
# Calico's routed mode with real commands, from node2 (pods reached with ip -n / netns).
sysctl -qw net.ipv4.ip_forward=1
for pod in c:10.244.2.2 d:10.244.2.3; do
  name=${pod%%:*} ip=${pod#*:} ns=$RUN-node2-${pod%%:*} cali=cali-$name
  ip link add $cali type veth peer name eth0 netns $ns
  ip -n $ns addr add $ip/32 dev eth0
  ip -n $ns link set eth0 up
  ip -n $ns route add 169.254.1.1/32 dev eth0 scope link
  ip -n $ns route add default via 169.254.1.1 dev eth0
  ip link set $cali address ee:ee:ee:ee:ee:ee up
  sysctl -qw net.ipv4.conf.$cali.proxy_arp=1 net.ipv4.neigh.$cali.proxy_delay=0
  ip route add $ip/32 dev $cali scope link
done
"""


def test_shell_cells_instead_of_python_and_an_unrepaired_break(course: GradingCourse) -> None:
    """Exercise 2 done with `%%ns` commands earns the same points as the Python solution; the
    break/fix left unrepaired gets zero with the first hint; a misread capture loses q5."""
    nb = course.mutant(
        {
            "ex2-solution": SHELL_EX2,
            "breakfix-solution": "pass  # not repaired",
            "answer-q5": 'q5 = {"ttl": 64, "src_mac": "ee:ee:ee:ee:ee:ee"}',
        }
    )
    result = course.grade("shell-unrepaired", nb)
    assert_scores(result, {"check-ex2-routed": 3, "check-ex2-node": 2, "check-q5": 0})
    assert "is routed: d saw source MAC ee:ee:ee:ee:ee:ee" in result.cell_text("check-ex2-routed")
    assert_caught(result, "check-breakfix", "Where it stops:")
    assert_caught(result, "check-breakfix", "paths fail")
    assert_caught(result, "check-q5", "'ttl': 64")
