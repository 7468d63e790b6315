"""Lab 04 round trips through the real `nbgrader autograde`.

(a) the solution gets full marks; (b) the untouched release gets zero, with feedback;
(c) known wrong answers in several cells at once (their checks are independent: each
builds its own bench) fail the checks meant for them, with the messages meant for them,
while the same kernel forges the grader and the runtime (which changes nothing: checks run
in the grader's own process and run the plugin file themselves).
Mutants of every check are covered one by one, without nbgrader, in test_lab04_checks.py;
the break/fix exercise in test_lab04_breakfix.py.
Total: 17 points.
"""

from __future__ import annotations

import html

import pytest

from tests.labs.test_lab04_checks import MUTANTS
from tests.nbharness import (
    REPO,
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_zero,
    lab_course,
)

pytestmark = pytest.mark.slow
LAB = "04-cni-plugin"


FORGE = """
import grader.nb
import grader.verify
from course.cni import runtime
from grader.verdict import Verdict

def check(lab, check_id):
    print(f"[PASS] {check_id}: everything is fine")

grader.nb.check = check
grader.verify.verify_in_subprocess = lambda *a, **k: Verdict(True, "forged")
runtime.Runtime.add = lambda self, *a, **k: {"cniVersion": "1.0.0", "interfaces": [], "ips": []}
runtime.Runtime.check = lambda self, *a, **k: None

def main():
    print('{"cniVersion": "1.0.0", "supportedVersions": ["1.0.0"]}')
"""


course = lab_course(LAB)


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution())
    assert_full_marks(result)
    assert result.max_score == 17


def test_release_gets_zero_with_feedback(course: GradingCourse) -> None:
    result = course.grade("release", course.release(), feedback=True)
    assert_zero(result)
    assert_caught(result, "check-ex0-add", "pod-manual has no interface from your ADD")
    assert_caught(result, "check-ex1", "VERSION is not answered")
    assert_caught(result, "check-q1", "no answer given")
    assert "NotImplementedError" in result.cell_text("check-ex2")  # the plugin's stderr, shown
    feedback = " ".join(html.unescape(result.feedback_html).split())
    assert "hint:" in feedback and "expected:" in feedback


def test_mutants_in_every_exercise_at_once(course: GradingCourse) -> None:
    bad = course.mutant(
        {
            "ex1-solution": MUTANTS["version-without-supported"]["ex1-solution"],
            "ex2-solution": MUTANTS["ignores-ifname"]["ex2-solution"],
            "ex3-solution": MUTANTS["del-leaks"]["ex3-solution"],
            "ex4-solution": MUTANTS["check-always-passes"]["ex4-solution"],
            "answer-q1": 'q1 = "c"',
            # a wrong answer, and a cheater: forged grader and runtime in the kernel
            "answer-q2": FORGE + 'q2 = "b"\n',
        }
    )
    result = course.grade("mutants", bad)
    assert_caught(result, "check-ex1", "VERSION is not answered as the spec says")
    assert_caught(result, "check-ex2", "ADD ignored CNI_IFNAME")
    assert_caught(result, "check-ex3", "DEL leaks addresses: ADD failed after 3 pods")
    assert_caught(result, "check-ex4", "CHECK passed with the pod's interface deleted")
    assert_caught(result, "check-q1", "why not 'c': the namespace took the pod's interfaces")
    assert_caught(result, "check-q2", "why not 'b': host-local never hands out an address")
    assert result.cells["check-ex0-add"].score == 1
    assert not any("everything is fine" in result.cell_text(g) for g in result.cells)


def test_release_carries_no_solution_or_check_code() -> None:
    text = (REPO / "labs" / LAB / f"{LAB}.ipynb").read_text()
    assert "BEGIN SOLUTION" not in text
    for marker in ("got = ipam(", 'q1 = \\"b\\"', "_leak_rounds", "mystery_probe"):
        assert marker not in text, marker
