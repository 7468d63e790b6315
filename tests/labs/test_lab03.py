"""Lab 03 round trips through the real `nbgrader autograde`.

Four autograde runs (each executes the whole notebook, BIRD included: 1-3 min on a loaded
2-core machine): (a) the solution gets full marks (19 points); (b) the untouched release gets
zero; (c) exercise 1 done with the Python API instead of shell commands scores the same, while
every other check gets one known mistake and says so (the checks are independent); (d) a
notebook that forges the grader and the probes and does no work scores nothing. Break/fix is
repaired in (a) and (c), unrepaired in (b) and (d). The other mistakes the issue lists (FDB,
neighbour or route missing, VNI or port mismatch, forwarding off, range not exported, a BIRD
config that does not parse, the overlay left in place) are proven against the checks directly,
on real namespaces, in tests/labs/test_lab03_checks.py (about 1.5 min).
"""

from __future__ import annotations

import pytest

from tests.nbharness import (
    GradingCourse,
    assert_caught,
    assert_full_marks,
    assert_zero,
    edit,
    lab_course,
)

pytestmark = pytest.mark.slow
LAB = "03-across-nodes"


course = lab_course(LAB)


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution(), feedback=True)
    assert_full_marks(result)
    assert result.max_score == 19
    assert "VXLAN VNI 1 carrying" in result.cell_text("check-ex1-vxlan")
    assert "(no encapsulation)" in result.cell_text("check-ex3-bgp")
    assert "repaired" in result.cell_text("check-breakfix")


def test_release_gets_zero(course: GradingCourse) -> None:
    result = course.grade("release", course.release())
    assert_zero(result)
    assert_caught(result, "check-ex1-vxlan", "node1 has no VXLAN device flannel.1")
    assert_caught(result, "check-ex3-bgp", "BIRD is not running in node1")
    assert_caught(result, "check-q1", "no answer given")
    assert_caught(result, "check-breakfix", "not repaired yet")


def test_python_api_overlay_and_one_mistake_per_other_check(course: GradingCourse) -> None:
    python_overlay = """
leases = [vxlan.setup_node(n) for n in (node1, node2)]
vxlan.add_peer(node1.ns, leases[1])
vxlan.add_peer(node2.ns, leases[0])
"""
    nb = course.mutant(
        {
            "ex1-solution": python_overlay,
            "ex2-solution": "pass",
            "ex3-solution": edit(
                course, "ex3-solution", "local 192.168.1.11 as 64512", "local 192.168.1.11 as 64513"
            ),
            "ex4-solution": edit(
                course, "ex4-solution", "ip neigh add proxy 192.168.1.121 dev eth0\n", ""
            ),
            "answer-q1": edit(course, "answer-q1", '"vni": 1,', '"vni": "1",'),
            "answer-q2": 'q2 = "a"',
            "answer-q3": 'q3 = "c"',
            "answer-q4": 'q4 = {"host-gw": True, "bgp": True, "vxlan": True}',
        }
    )
    result = course.grade("mutants", nb)
    assert result.cells["check-ex1-vxlan"].score == 4  # the Python API is as good as the shell
    assert_caught(result, "check-ex2-mtu", "pod a still sends 1500-byte packets")
    assert_caught(result, "check-ex3-bgp", "BGP session node1 -> node2 is not Established")
    assert_caught(result, "check-ex3-bgp", "Bad peer AS")
    assert_caught(result, "check-ex4-underlay", "nobody on the node network answers for")
    assert_caught(result, "check-q1", "vni = '1': the right VNI, written as a string")
    assert_caught(result, "check-q2", "why not 'a': DF (`-M do`) forbids fragmenting")
    assert_caught(result, "check-q3", "why not 'c': nothing was wrapped")
    assert_caught(result, "check-q4", "host-gw = True: a host-gw route's gateway must be")
    assert_caught(result, "check-q4", "bgp = True: the session comes up")
    assert result.cells["check-breakfix"].score == 3


FORGE = """
import grader.nb
import grader.verify
import grader.probes
from grader.verdict import Verdict

grader.nb.check = lambda lab, check_id: print(f"[PASS] {check_id}")
grader.verify.verify_in_subprocess = lambda *a, **k: Verdict(True, "forged")
_fake = grader.probes.Observation("icmp-echo", "x", "10.244.2.2", "forged")
_fake.replies.append(grader.probes.Frame(0.1, "eth0", "ICMP echo-reply", src="10.244.2.2"))
grader.probes.ping = lambda *a, **k: _fake
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
"""


def test_forged_grader_and_probes_with_no_work_score_nothing(course: GradingCourse) -> None:
    nb = course.mutant(
        {
            "ex1-solution": FORGE,
            "ex2-solution": "pass",
            "ex3-solution": "pass",
            "ex4-solution": "pass",
            "breakfix-solution": "pass",
            "answer-q1": "pass",
            "answer-q2": "pass",
            "answer-q3": "pass",
            "answer-q4": "pass",
        }
    )
    result = course.grade("forger", nb)
    assert_zero(result)
    assert_caught(result, "check-ex1-vxlan", "node1 has no VXLAN device flannel.1")
