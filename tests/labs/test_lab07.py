"""Lab 07 end to end through the real `nbgrader autograde`: the solution gets full marks, the
release gets nothing, each known wrong answer loses the points of the check meant to catch it
(with the message meant for it), and a cheater gets nothing.

Three autograde runs in all (each takes 1-2 minutes on a loaded 2-core machine): mutants share
one submission and the release carries the cheater; each assertion names the check its mutant
targets. The checks' finer messages are proven in test_lab07_checks.py, without nbgrader.
Total: 21 points (exercises 4 + 3 + 3 + 3 + 3, five questions of 1 point).
"""

from __future__ import annotations

import pytest

from tests.nbharness import (
    GradingCourse,
    always_equal,
    assert_caught,
    assert_full_marks,
    assert_scores,
    assert_zero,
    edit,
    lab_course,
)

pytestmark = pytest.mark.slow
LAB = "07-nodeport-masquerade"
FULL = {
    "check-q1": 1,
    "check-ex1-masquerade": 4,
    "check-q2": 1,
    "check-q3": 1,
    "check-ex2-local": 3,
    "check-q4": 1,
    "check-ex3-hairpin": 3,
    "check-q5": 1,
    "check-ex4-headless": 3,
    "check-ex5-breakfix": 3,
}
FORGE = """
import grader.nb, grader.verify
from grader.verdict import Verdict
# A learner who would rather not: every check "passes" in this kernel...
grader.verify.verify_in_subprocess = lambda *a, **k: Verdict(True, "everything is fine")
grader.nb.check = lambda *a, **k: print("[PASS] everything is fine")
# ...and kube-proxy's own rules stand in for the exercise
from course.kubeproxy.cluster import ClusterKubeProxy
ClusterKubeProxy(cluster, lab.kube_proxy.controller.services.values(),
                 lab.kube_proxy.controller.pods.values()).sync()
masquerade_rules = ""
"""
course = lab_course(LAB)


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution(), feedback=True)
    assert_full_marks(result)
    assert result.max_score == sum(FULL.values())
    assert "the pods saw 192.168.1.11" in result.cell_text("check-ex1-masquerade")
    assert "saw 10.244.1.1" in result.cell_text("check-ex3-hairpin")
    assert "externalTrafficPolicy" in result.feedback_html


def test_release_and_a_cheater_get_zero(course: GradingCourse) -> None:
    """The untouched release, plus forged grader functions, kube-proxy's own rules for
    exercise 1 and an always-equal answer (no real work anywhere): zero."""
    release = course.release()
    forged = course.mutant(
        {"ex1-solution": FORGE, "answer-q1": always_equal("q1", "a")}, base=release
    )
    result = course.grade("release-cheater", forged)
    assert_zero(result)
    assert "everything is fine" not in result.cell_text("check-ex1-masquerade")
    assert_caught(result, "check-ex1-masquerade", "reference implementation")
    assert_caught(result, "check-ex2-local", "nothing answers on node2:30081")
    assert_caught(result, "check-ex3-hairpin", "the SYN never came back into pod a")
    assert_caught(result, "check-ex4-headless", "does not resolve to the web pods")
    assert_caught(result, "check-ex5-breakfix", "not repaired yet")
    assert_caught(result, "check-q1", "q1")


def test_mutants(course: GradingCourse) -> None:
    """No MASQUERADE rule, externalTrafficPolicy left Cluster, hairpin left off, a headless
    Service given a ClusterIP, five wrong predictions: each check meant for one of them
    fails with its message (a wrong prediction with the explanation of the option chosen);
    the break/fix repair (which writes the masquerade chains again, correctly) keeps its
    points."""
    masq = '  $ipt -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully\n'
    nb = course.mutant(
        {
            "ex1-solution": edit(course, "ex1-solution", masq, ""),
            "ex2-solution": edit(
                course,
                "ex2-solution",
                "externalTrafficPolicy: Local",
                "externalTrafficPolicy: Cluster",
            ),
            "ex3-solution": "pass",
            "ex4-solution": edit(
                course, "ex4-solution", "clusterIP: None", "clusterIP: 10.96.0.22"
            ),
            "answer-q1": 'q1 = "a"',
            "answer-q2": 'q2 = "c"',
            "answer-q3": 'q3 = "a"',
            "answer-q4": 'q4 = "10.244.1.2"',
            "answer-q5": 'q5 = "c"',
        }
    )
    result = course.grade("mutants", nb)
    assert_scores(result, {**{k: 0 for k in FULL}, "check-ex5-breakfix": 3})
    assert_caught(result, "check-ex1-masquerade", "KUBE-POSTROUTING never masquerades")
    assert_caught(result, "check-ex1-masquerade", "got the SYN from 203.0.113.10")
    # without any MASQUERADE, a Cluster-policy node1 forwards unmasqueraded to node2
    assert_caught(result, "check-ex2-local", "node1 forwards web-local traffic")
    assert_caught(result, "check-ex3-hairpin", "the SYN never came back into pod a")
    assert_caught(result, "check-ex4-headless", "has kube-proxy rules for web-headless")
    assert_caught(result, "check-q1", "why not 'a': only node1 could turn the pod's address")
    assert_caught(result, "check-q2", "why not 'c': MASQUERADE runs in nat POSTROUTING")
    assert_caught(result, "check-q3", "why not 'a': that is externalTrafficPolicy: Cluster")
    assert_caught(result, "check-q4", "why not '10.244.1.2': pod a's own address")
    assert_caught(result, "check-q5", "why not 'c': hairpin mode is about the port")
