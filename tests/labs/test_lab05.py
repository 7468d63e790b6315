"""Lab 05 end to end through the real `nbgrader autograde`: the solution gets full marks, a
release that only forges gets nothing, and the known wrong answers lose exactly the points
of the checks meant to catch them, with the messages meant for them.

Three gradings, each in its own scratch course, run at the same time (each grading is one
kernel and one verifier, mostly waiting on packets and processes): the solution, the
release (untouched cells plus forged ones), and one notebook carrying every independent
mutant at once. The checks' own mutants are tested one by one, without nbgrader, in
tests/labs/test_lab05_checks.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from grader.nbtools import GradeResult
from tests.nbharness import (
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_scores,
    assert_zero,
    edit,
)

pytestmark = pytest.mark.slow
LAB = "05-netfilter-order"
FULL = {
    "check-forwarded": 1,
    "check-to_node": 1,
    "check-from_node": 1,
    "check-ex2-counters": 2,
    "check-ex3-dnat-pod": 2,
    "check-ex3-dnat-node": 2,
    "check-q_match": 1,
    "check-ex4-block": 3,
    "check-q_nat_packets": 1,
    "check-q_refused": 1,
    "check-breakfix": 3,
}


def mutants(course: GradingCourse) -> dict[str, Any]:
    """Every independent wrong answer at once (each loses only its own check's points)."""
    sol = course.solution()
    return course.mutant(
        {
            # nat before mangle in PREROUTING
            "answer-q1": edit(
                sol, "answer-q1",
                '"mangle PREROUTING",\n    "nat PREROUTING",\n    "mangle FORWARD"',
                '"nat PREROUTING",\n    "mangle PREROUTING",\n    "mangle FORWARD"',
            ),
            # the counting rules in raw and mangle only (nat forgotten)
            "ex2-solution": edit(sol, "ex2-solution", "raw mangle nat", "raw mangle"),
            # DNAT only in PREROUTING: the node's own connections stay untranslated
            "ex3-output-solution": "%%ns node1\ntrue\n",
            # FORWARD rule on the Service address (before DNAT)
            "ex4-solution": edit(
                sol, "ex4-solution", "-d 10.244.2.2 -p tcp --dport 8080", "-d 10.96.0.50 -p tcp --dport 80"
            ),
            "answer-q_match": 'q_match = "a"',
            "answer-q_nat_packets": "q_nat_packets = 7",
            "answer-q_refused": 'q_refused = "d"',  # the chain's policy
            # break/fix left as it is
            "ex5-solution": "%%ns node1\niptables -L -v -n | head -5\n",
        }
    )  # fmt: skip


FORGED = {
    # an object equal to anything: not a literal, so never read as an answer
    "answer-q1": "class Anything(list):\n    def __eq__(self, other):\n        return True\n\n"
    "forwarded = to_node = from_node = Anything()\n",
    # claims success instead of changing the kernel
    "ex2-solution": "%%ns node1\necho '[PASS] a counter in every table of PREROUTING'\n",
    # replaces what the notebook's own helpers and check() would say
    "ex4-solution": "import grader.nb, grader.tracing\n\n"
    "def check(lab, check_id):\n    print('[PASS]', check_id)\n\n\n"
    "grader.nb.check = check\ngrader.tracing.trace_probe = lambda *a, **k: None\n",
    "ex5-solution": "%%ns node1\n# nothing repaired\ntrue\n",
}


@pytest.fixture(scope="module")
def graded() -> Iterator[dict[str, GradeResult]]:
    courses = {name: GradingCourse.open(LAB) for name in ("solution", "forged", "mutants")}
    try:
        notebooks = {
            "solution": courses["solution"].solution(),
            "forged": courses["forged"].mutant(FORGED, base=courses["forged"].release()),
            "mutants": mutants(courses["mutants"]),
        }
        with ThreadPoolExecutor(max_workers=3) as pool:
            futures = {
                name: pool.submit(courses[name].grade, name, nb, name == "solution")
                for name, nb in notebooks.items()
            }
            yield {name: f.result() for name, f in futures.items()}
    finally:
        for c in courses.values():
            c.close()


def test_solution_gets_full_marks(graded: dict[str, GradeResult]) -> None:
    result = graded["solution"]
    assert_full_marks(result)
    assert result.max_score == sum(FULL.values())
    assert "nat PREROUTING +3" in result.cell_text("check-ex2-counters")
    assert "dropped in filter FORWARD" in result.cell_text("check-ex4-block")
    assert "routing decision: another host" in result.cell_text("check-forwarded")
    assert "repaired" in result.cell_text("check-breakfix")
    assert "packet now TCP" in result.feedback_html


def test_release_that_only_forges_gets_zero(graded: dict[str, GradeResult]) -> None:
    result = graded["forged"]
    assert_zero(result)
    assert_caught(result, "check-forwarded", "no answer given")
    assert_caught(result, "check-ex2-counters", "no rule in raw PREROUTING")
    assert_caught(result, "check-ex3-dnat-pod", "was not translated to pod b")
    assert_caught(result, "check-ex4-block", "not by a DROP in filter FORWARD")
    assert_caught(result, "check-q_match", "no answer given")
    assert_caught(result, "check-breakfix", "not repaired yet")


def test_each_mutant_loses_its_own_points(graded: dict[str, GradeResult]) -> None:
    result = graded["mutants"]
    zero = ("check-forwarded", "check-ex2-counters", "check-ex3-dnat-node", "check-q_match",
            "check-ex4-block", "check-q_nat_packets", "check-q_refused", "check-breakfix")  # fmt: skip
    assert_scores(result, {**FULL, **dict.fromkeys(zero, 0)})
    assert_caught(result, "check-forwarded", "<== first difference")
    assert_caught(result, "check-forwarded", "why not 'nat PREROUTING' before 'mangle PREROUTING'")
    assert_caught(result, "check-ex2-counters", "no rule in nat PREROUTING saw pod a's packets")
    assert_caught(result, "check-ex3-dnat-node", "never pass PREROUTING")
    assert_caught(result, "check-ex4-block", "names the Service address 10.96.0.50")
    assert_caught(result, "check-q_match", "why not 'a': by the time filter FORWARD sees")
    assert_caught(result, "check-q_nat_packets", "why not 7: only the first packet")
    assert_caught(result, "check-q_refused", "why not 'd': a policy decides the packets")
    assert_caught(result, "check-breakfix", "Where it stops:")
