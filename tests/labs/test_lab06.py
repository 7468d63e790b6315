"""Lab 06 end to end through the real `nbgrader autograde`: the solution gets full marks, the
release gets nothing, and each known wrong answer loses the points of the checks meant to catch
it, with the messages meant for it.

A mutant is the solution notebook with one function edited the way a learner gets it wrong;
the grader then sees the consequences only through the node's nat table and real connections.
"""

from __future__ import annotations

import re

import pytest

from tests.nbharness import (
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_scores,
    assert_zero,
    edit,
    lab_course,
    source,
)

pytestmark = pytest.mark.slow
LAB = "06-kube-proxy"
FULL = {
    "check-q1": 1,
    "check-ex3-names": 2,
    "check-ex3-cascade": 2,
    "check-ex3-spread": 4,
    "check-q2": 1,
    "check-q3": 1,
    "check-ex4-not-ready": 3,
    "check-ex5-affinity": 3,
    "check-q4": 1,
    "check-ex6-by-hand": 2,
    "check-ex7-breakfix": 3,
}


# Exercise 6 from Python instead of a %%ns cell: the check reads the kernel, so both count.
ECHO_IN_PYTHON = """
svc, sep = svc_chain("default/echo:http", "tcp"), sep_chain("default/echo:http", "tcp", "10.244.1.4:8080")
node.ns.apply_iptables(
    "*nat\\n"
    f":{svc} - [0:0]\\n:{sep} - [0:0]\\n"
    f"-A KUBE-SERVICES -p tcp -d 10.96.0.12/32 --dport 80 -j {svc}\\n"
    f"-A {svc} -j {sep}\\n"
    f"-A {sep} -s 10.244.1.4/32 -j KUBE-MARK-MASQ\\n"
    f"-A {sep} -p tcp -j DNAT --to-destination 10.244.1.4:8080\\n"
    "COMMIT\\n",
    noflush=True,
)
"""


# One traced connection as the notebook's trace cells print it: the first packet's walk
# through kube-proxy's chains, the cascade rule that matched, and the DNAT.
WALK = re.compile(
    r"answered by (\S+):\n    nat (\w+)\n    -> KUBE-SERVICES rule 1\n"
    r"    -> KUBE-SVC-CDGGSHYLG3RE2FKL rule (\d) \(([^)]*)\)\n"
    r"    -> KUBE-SEP-[A-Z2-7]{16} rule 2 \(DNAT to ([\d.]+):8080\)"
)
CASCADE = {"1": "probability 0.33333333349", "2": "probability 0.50000000000",
           "3": "no probability: always"}  # fmt: skip
POD_IPS = {"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4"}


def assert_traced(text: str, hook: str, count: int) -> None:
    """`count` walks entering kube-proxy's chains from nat `hook`, each through the cascade
    rule with its kernel probability, each DNATed to the very pod that answered."""
    walks = WALK.findall(text)
    assert len(walks) == count, text
    for pod, entered, rule, did, dnat in walks:
        assert (entered, did, dnat) == (hook, CASCADE[rule], POD_IPS[pod]), text


course = lab_course(LAB)


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution(), feedback=True)
    assert_full_marks(result)
    assert result.max_score == sum(FULL.values())
    assert "0.33333333349, 0.50000000000" in result.cell_text("check-ex3-cascade")
    assert "spreads new connections evenly" in result.cell_text("check-ex3-spread")
    assert "(10.244.1.3)" not in result.cell_text("check-ex4-not-ready")
    assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in result.feedback_html
    # the learner tools: journeys under the main checks, the shell exercise, break/fix repaired
    assert "DNAT 10.96.0.10:80 -> 10.244.1." in result.cell_text("check-ex3-spread")
    assert "DNAT 10.96.0.12:80 -> 10.244.1.4:8080" in result.cell_text("check-ex6-by-hand")
    assert "repaired: 10.96.0.10:80 answers again" in result.cell_text("check-ex7-breakfix")
    # lab 05's tracer on the learner's rules, in the grading sandbox: from pod d (PREROUTING),
    # and from node1 itself (OUTPUT), which needs the node's default route (the lab's router)
    assert_traced(result.cell_text("trace"), "PREROUTING", 6)
    node = result.cell_text("trace-node")
    assert_traced(node, "OUTPUT", 1)
    assert "TCP 192.168.1.11:" in node and "-- leaves by cni0" in node, node


def test_release_gets_zero(course: GradingCourse) -> None:
    result = course.grade("release", course.release())
    assert_zero(result)
    assert_caught(result, "check-ex3-names", "KUBE-SERVICES has no rule for 10.96.0.10:80")
    assert_caught(result, "check-ex3-spread", "no connection to 10.96.0.10:80 was translated")
    assert_caught(result, "check-ex5-affinity", "KUBE-SERVICES has no rule for 10.96.0.11:80")
    assert_caught(result, "check-q1", "no answer given")
    assert_caught(result, "check-ex6-by-hand", "KUBE-SERVICES has no rule for 10.96.0.12:80")
    assert_caught(result, "check-ex7-breakfix", "not repaired yet")
    assert "Where it stops:" in result.cell_text("check-ex7-breakfix")  # the level-1 hint
    # no rules yet: the trace cells still run, and show walks that stop at KUBE-SERVICES
    assert result.cell_text("trace").count("from pod d, source port") == 6
    assert "from node1, source port" in result.cell_text("trace-node")


def test_every_rule_one_over_n_and_no_affinity(course: GradingCourse) -> None:
    """1/n on every rule skews towards c; sticky rules without affinity spread one client."""
    nb = course.mutant(
        {
            "ex1-solution": edit(
                course,
                "ex1-solution",
                'return [f"{1.0 / (n - i):0.10f}" for i in range(n - 1)] + [None]',
                'return [f"{1.0 / n:0.10f}"] * (n - 1) + [None]',
            ),
            "ex5-solution": "def sticky_service_rules(svc, endpoints):\n"
            "    return service_rules(svc, endpoints)\n",
            "answer-q1": 'q1 = "a"',
        }
    )
    result = course.grade("mutant-one-over-n", nb)
    # with two endpoints left, 1/n is 1/2: exercise 4 is right by luck, as on a real node
    assert_scores(
        result,
        {**FULL, "check-q1": 0, "check-ex3-cascade": 0, "check-ex3-spread": 0,
         "check-ex5-affinity": 0},
    )  # fmt: skip
    assert_caught(result, "check-ex3-cascade", "every rule uses 1/3")
    assert_caught(result, "check-ex3-spread", "traffic is skewed towards the last endpoint (c)")
    assert_caught(result, "check-ex5-affinity", "does not look up the client's last endpoint")
    assert_caught(result, "check-q1", "q1 = 'a'")
    assert_caught(result, "check-q1", "why not 'a': the kernel does not keep the text")


def test_cascade_without_final_rule(course: GradingCourse) -> None:
    line = (
        "        lines.append(f'-A {chain} -m comment --comment \"{spn} -> {ep}\"{stat} -j {sep}')"
    )
    nb = course.mutant(
        {
            "ex3-solution": edit(course, "ex3-solution", line, "        if p:\n    " + line),
            "answer-q2": "q2 = 11",
            "ex6-solution": ECHO_IN_PYTHON,  # the shell exercise done from Python: same marks
            "answer-q4": 'q4 = "b"',
        }
    )
    result = course.grade("mutant-no-final-rule", nb)
    assert result.cells["check-ex6-by-hand"].score == 2
    assert_caught(result, "check-q4", "q4 = 'b'")
    assert_caught(result, "check-ex3-cascade", "has no final unconditional rule")
    assert_caught(result, "check-ex3-spread", "were not translated")
    assert_caught(result, "check-ex4-not-ready", "were not translated")
    assert_caught(result, "check-q2", "q2 = 11")
    assert_caught(result, "check-q2", "the SYN is counted, the ten lines are not")
    assert result.cells["check-ex5-affinity"].score == 3


def test_missing_kube_services_jump(course: GradingCourse) -> None:
    text = source(course, "ex3-solution")
    mutated = re.sub(r"    lines\.append\(\n        f'-A KUBE-SERVICES.*?\n    \)\n", "", text,
                     flags=re.S)  # fmt: skip
    assert mutated != text
    result = course.grade("mutant-no-jump", course.mutant({"ex3-solution": mutated}))
    assert_caught(result, "check-ex3-names", "KUBE-SERVICES has no rule for 10.96.0.10:80")
    assert_caught(result, "check-ex3-spread", "no connection to 10.96.0.10:80 was translated")
    assert_caught(result, "check-ex4-not-ready", "no connection to 10.96.0.10:80 was translated")
    assert_scores(result, {"check-ex3-cascade": 0, "check-ex5-affinity": 3})


def test_dnat_to_the_service_port(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex3-solution": edit(
                course,
                "ex3-solution",
                "-j DNAT --to-destination {ep}",
                "-j DNAT --to-destination {ep.split(':')[0]}:{port.port}",
            ),
            "ex6-solution": edit(course, "ex6-solution", "10.244.1.4:8080", "10.244.1.4:80"),
        }
    )
    result = course.grade("mutant-port", nb)
    assert_caught(result, "check-ex6-by-hand", "wrong target port, the pods serve 8080")
    assert_caught(result, "check-ex3-names", "wrong target port, the pods serve 8080")
    assert_caught(result, "check-ex3-spread", "DNATed to the wrong port, not the pods' 8080")
    assert result.cells["check-ex3-cascade"].score == 2


def test_not_ready_pod_without_resync(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex4-solution": edit(course, "ex4-solution", "    sync()\n", ""),
            "answer-q3": 'q3 = "c"',
        }
    )
    result = course.grade("mutant-no-resync", nb)
    assert_scores(result, {**FULL, "check-ex4-not-ready": 0, "check-q3": 0})
    assert_caught(
        result, "check-ex4-not-ready", "a pod that is not ready still receives new connections"
    )
    assert_caught(result, "check-q3", "q3 = 'c'")
    assert_caught(result, "check-q3", "its later packets follow the conntrack entry")


def test_ready_endpoints_ignoring_readiness(course: GradingCourse) -> None:
    """Every endpoint of the slice, ready or not: the resync keeps pod b in both Services."""
    nb = course.mutant(
        {
            "ex3-solution": edit(
                course, "ex3-solution", "if ep.conditions.ready is not False:", "if True:"
            )
        }
    )
    result = course.grade("mutant-readiness", nb)
    assert_scores(result, {**FULL, "check-ex4-not-ready": 0, "check-ex5-affinity": 0})
    assert_caught(
        result, "check-ex4-not-ready", "a pod that is not ready still receives new connections"
    )
    assert_caught(result, "check-ex5-affinity", "does not jump to kube-proxy's KUBE-SEP chains")
