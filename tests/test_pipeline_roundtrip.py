"""The notebook pipeline end to end on the fixture lab, through the real `nbgrader autograde`.

The fixture lab (tests/fixtures) creates one namespace and asks one question; its checks
are real (netlink state read by the verifier process). Here we prove the pipeline itself:
full marks, zero for the release, mutants caught with their message, deleted check cells
still graded, feedback carrying the explanations, cheaters scoring nothing, and hanging
cells cut off while grading goes on.
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterator

import pytest

from tests.nbharness import (
    FIXTURES,
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_scores,
    assert_zero,
)

pytestmark = pytest.mark.slow
LAB = "00-fixture"

LO_LEFT_DOWN = 'subprocess.run(["ip", "netns", "add", pod_name], check=True)'

FORGE_GRADER = """
import grader.nb
import grader.verify
from grader.verdict import Verdict

def check(lab, check_id):
    print("[PASS] everything is fine")

grader.nb.check = check
grader.verify.verify_in_subprocess = lambda *a, **k: Verdict(True, "forged")
"""

FORGE_PACKETS = (
    """
import subprocess as _sp
import scapy.sendrecv
from scapy.layers.inet import ICMP, IP

_real_run = _sp.run
# Invent echo replies, and make the verifier launch print a passing verdict.
scapy.sendrecv.sr1 = lambda *a, **k: IP(src="10.244.1.3") / ICMP(type=0)
scapy.sendrecv.sr = lambda *a, **k: ([], [])
VERDICT = 'K8SNET-VERDICT {"passed": true, "summary": "forged", "sent": "", '
VERDICT += '"observed": "", "expected": "", "hint": "", "details": []}'

def fake_run(argv, *a, **k):
    if "grader.verify" in argv:
        return _sp.CompletedProcess(argv, 0, VERDICT + "\\n", "")
    return _real_run(argv, *a, **k)

_sp.run = fake_run
"""
    + LO_LEFT_DOWN
)

SILENCE_TRACEBACKS = (
    """
import sys
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
sys.excepthook = lambda *a: None
"""
    + LO_LEFT_DOWN
)

ALWAYS_EQUAL = """
class AlwaysEqual(str):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    __hash__ = str.__hash__

q1 = AlwaysEqual("up")
"""


@pytest.fixture(scope="module")
def course() -> Iterator[GradingCourse]:
    os.environ["K8SNET_EXTRA_LABS"] = str(FIXTURES / "labs")
    c = GradingCourse.open(LAB, source_root=FIXTURES)
    yield c
    c.close()


def test_solution_gets_full_marks_and_feedback_explains(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution(), feedback=True)
    assert_full_marks(result)
    assert result.max_score == 3
    assert "the pod namespace exists and its loopback is UP" in result.feedback_html


def test_release_gets_zero(course: GradingCourse) -> None:
    result = course.grade("release", course.release())
    assert_zero(result)
    assert_caught(result, "check-ex1", "the pod namespace does not exist")
    assert_caught(result, "check-q1", "no answer given")


def test_mutant_loopback_down_is_caught_with_its_message(course: GradingCourse) -> None:
    result = course.grade("mutant-lo", course.mutant({"ex1-solution": LO_LEFT_DOWN}), True)
    assert_scores(result, {"check-ex1": 0, "check-q1": 1})
    assert_caught(result, "check-ex1", "the pod's loopback is DOWN")
    assert "ip -n NAME link set lo up" in result.cell_text("check-ex1")
    # the student reads the same explanation in the feedback copy
    feedback = html.unescape(result.feedback_html)
    assert "[FAIL] the pod's loopback is DOWN" in feedback
    assert "expected: lo UP" in " ".join(feedback.split())


def test_wrong_answer_is_caught(course: GradingCourse) -> None:
    result = course.grade("mutant-q1", course.mutant({"answer-q1": 'q1 = "up"'}))
    assert_scores(result, {"check-ex1": 2, "check-q1": 0})
    assert_caught(result, "check-q1", "q1 = 'up'")


def test_deleted_check_cell_is_still_graded(course: GradingCourse) -> None:
    right = course.grade("deleted-right", course.without("check-ex1"))
    assert_full_marks(right)
    wrong = course.without("check-ex1", course.mutant({"ex1-solution": LO_LEFT_DOWN}))
    result = course.grade("deleted-wrong", wrong)
    assert_caught(result, "check-ex1", "loopback is DOWN")


@pytest.mark.parametrize(
    ("student", "cell", "source", "message"),
    [
        ("forge-grader", "ex1-solution", FORGE_GRADER, "does not exist"),
        ("forge-packets", "ex1-solution", FORGE_PACKETS, "loopback is DOWN"),
        ("silence-tb", "ex1-solution", SILENCE_TRACEBACKS, "loopback is DOWN"),
    ],
)
def test_cheaters_gain_nothing(
    course: GradingCourse, student: str, cell: str, source: str, message: str
) -> None:
    result = course.grade(student, course.mutant({cell: source}))
    assert_caught(result, "check-ex1", message)
    assert "forged" not in result.cell_text("check-ex1")
    assert "everything is fine" not in result.cell_text("check-ex1")


def test_always_equal_answer_gains_nothing(course: GradingCourse) -> None:
    result = course.grade("always-equal", course.mutant({"answer-q1": ALWAYS_EQUAL}))
    assert_caught(result, "check-q1", "no answer given")


def test_forged_grader_would_pass_without_the_verifying_executor(course: GradingCourse) -> None:
    """Control: with nbgrader's stock executor the forged check passes, so the test above
    fails if the verifying executor stops doing its job."""
    stock = (
        "--Autograde.autograde_preprocessors=['nbgrader.preprocessors.Execute',"
        "'nbgrader.preprocessors.SaveAutoGrades']"
    )
    result = course.grade(
        "forge-stock", course.mutant({"ex1-solution": FORGE_GRADER}), False, [stock]
    )
    assert result.cells["check-ex1"].score == 2


def test_hanging_cell_is_cut_off_and_grading_goes_on(course: GradingCourse) -> None:
    hang = course.mutant({"ex1-solution": "import time\ntime.sleep(3600)"})
    result = course.grade("hang", hang, extra_args=["--Execute.timeout=5"])
    assert "CellTimeoutError" in result.cell_text("ex1-solution")
    assert_scores(result, {"check-ex1": 0, "check-q1": 1})
