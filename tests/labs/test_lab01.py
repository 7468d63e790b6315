"""Lab 01 round trips through the real `nbgrader autograde`.

(a) the solution gets full marks; (b) the untouched release gets zero; (c) each known wrong
answer fails the check meant to catch it, with the message meant for it; (d) the feedback
copy carries the explanations; and cheating (forged grader functions, Scapy/probe patches
that invent replies, silenced tracebacks, an always-equal answer) earns nothing.

Mutants whose target checks do not depend on each other share one submission, to keep
the suite fast; each assertion names only the check its mutant targets.
Total: 12 points (exercises 1-4: 1+2+2+2, questions 1-3: 1 each, break/fix: 2).
Exercise 4 and the break/fix repair are shell cells (`%%ns node1`) in the solution; a
variant does both in Python and also gets full marks: the checks observe the kernel.
"""

from __future__ import annotations

import html
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.nbharness import (
    REPO,
    GradingCourse,
    always_equal,
    assert_caught,
    assert_full_marks,
    assert_zero,
    lab_course,
)

pytestmark = pytest.mark.slow
LAB = "01-netns-veth"

LO_LEFT_DOWN = 'pod_a = new_namespace("pod-a")'

PEER_IN_NODE = """
pod_b = new_namespace("pod-b")
pod_b.up("lo")
pod_a.add_veth("eth0", node, "eth0")  # wrong: the other end lands in the node namespace
pod_a.add_address("eth0", "10.244.1.2/24")
pod_a.up("eth0")
"""

POD_B_LINK_DOWN = """
pod_b = new_namespace("pod-b")
pod_b.up("lo")
pod_a.add_veth("eth0", pod_b, "eth0")
pod_a.add_address("eth0", "10.244.1.2/24")
pod_b.add_address("eth0", "10.244.1.3/24")
pod_a.up("eth0")
"""

SERVER = '[sys.executable, "-m", "http.server", "8080", "--bind", "{bind}"]'
SERVER_IN_POD_B = f"""
app = pod_b.popen({SERVER.format(bind="127.0.0.1")}, stdout=subprocess.DEVNULL)
wait_listening(pod_b, 8080)
"""
SERVER_ON_ALL_ADDRESSES = f"""
app = pod_a.popen({SERVER.format(bind="0.0.0.0")}, stdout=subprocess.DEVNULL)
wait_listening(pod_a, 8080)
"""


def node_wiring(skip: str) -> str:
    """The exercise 4 solution with one step (`up` or `route`) left out."""
    steps = {
        "up": "    node.up(host_end)\n",
        "route": '    node.add_route(f"{ip}/32", dev=host_end)\n',
    }
    body = "".join(v for k, v in steps.items() if k != skip)
    return (
        'node.add_address("lo", "10.244.1.1/32")\n'
        'for role, ip, host_end in (("pod-c", "10.244.1.4", "veth-c"), '
        '("pod-d", "10.244.1.5", "veth-d")):\n'
        "    pod = new_namespace(role)\n"
        '    pod.up("lo")\n'
        '    pod.add_veth("eth0", node, host_end)\n'
        '    pod.add_address("eth0", f"{ip}/24")\n'
        '    pod.up("eth0")\n' + body + 'pod_c, pod_d = cluster.namespaces["pod-c"], '
        'cluster.namespaces["pod-d"]\n'
    )


PYTHON_REPAIR = """
node.add_address("lo", "10.244.1.1/32")
for pod, ip, host_end in ((pod_c, "10.244.1.4", "veth-c"), (pod_d, "10.244.1.5", "veth-d")):
    pod.up("eth0")
    pod.run(["ip", "addr", "flush", "dev", "eth0"])
    pod.add_address("eth0", f"{ip}/24")
    node.up(host_end)
    node.add_route(f"{ip}/32", dev=host_end)
"""

SHELL_VETH_D_LEFT_DOWN = """%%ns node1
ip addr replace 10.244.1.1/32 dev lo
for pod in c d; do
    ip link add veth-$pod type veth peer name eth0 netns $RUN-pod-$pod
    ip -n $RUN-pod-$pod link set lo up
    ip -n $RUN-pod-$pod link set eth0 up
done
ip -n $RUN-pod-c addr replace 10.244.1.4/24 dev eth0
ip -n $RUN-pod-d addr replace 10.244.1.5/24 dev eth0
ip link set veth-c up
ip route replace 10.244.1.4/32 dev veth-c
ip route replace 10.244.1.5/32 dev veth-d
"""

FORGE_GRADER = """
import grader.nb
import grader.verify
from grader.verdict import Verdict

def check(lab, check_id):
    print(f"[PASS] {check_id}: everything is fine")

grader.nb.check = check
grader.verify.verify_in_subprocess = lambda *a, **k: Verdict(True, "forged")
"""

FORGE_PACKETS = """
import sys
import scapy.sendrecv
import grader.probes
from scapy.layers.inet import ICMP, IP

# Invent replies at every level a check in this kernel could use...
scapy.sendrecv.sr1 = lambda *a, **k: IP(src="127.0.0.1") / ICMP(type=0)
scapy.sendrecv.srp1 = scapy.sendrecv.sr1
_fake = grader.probes.Observation("icmp-echo", "x", "127.0.0.1", "forged")
_fake.replies.append(grader.probes.Frame(0.1, "lo", "ICMP echo-reply", src="127.0.0.1"))
grader.probes.ping = lambda *a, **k: _fake
grader.probes.tcp_connect = lambda *a, **k: _fake
# ...and hide every error from here on.
get_ipython().set_custom_exc((BaseException,), lambda *a, **k: None)
sys.excepthook = lambda *a: None
pod_a = new_namespace("pod-a")  # lo left DOWN
"""

course = lab_course(LAB)


def test_solution_gets_full_marks(course: GradingCourse) -> None:
    result = course.grade("solution", course.solution())
    assert_full_marks(result)
    assert result.max_score == 12


def test_release_gets_zero_with_feedback(course: GradingCourse) -> None:
    result = course.grade("release", course.release())
    assert_zero(result)
    assert_caught(result, "check-ex1", "there is no pod-a namespace")
    assert_caught(result, "check-q1", "no answer given")
    assert "hint:" in result.cell_text("check-ex2")


def test_loopback_down_no_route_and_wrong_answer(course: GradingCourse) -> None:
    bad = course.mutant(
        {
            "ex1-solution": LO_LEFT_DOWN,
            "ex4-solution": node_wiring("route"),
            "answer-q1": 'q1 = "a"',
        }
    )
    result = course.grade("lo-route-q1", bad, feedback=True)
    assert_caught(result, "check-ex1", "pod-a's lo is DOWN")
    assert_caught(result, "check-ex4", "node1 does not route 10.244.1.4 to pod-c's veth")
    assert_caught(result, "check-q1", "q1: that is not what the kernel does")
    assert_caught(result, "check-q1", "why not 'a': a veth pair is not two cards")
    feedback = " ".join(html.unescape(result.feedback_html).split())
    assert "[FAIL] pod-a's lo is DOWN" in feedback
    assert "hint: pod_a.up('lo')" in feedback
    assert "[PASS] pod-a and pod-b are joined by a veth pair" in feedback
    assert_no_check_code(feedback)


def assert_no_check_code(text: str) -> None:
    """Check code lives in grader/labs; neither release nor feedback copies may carry it."""
    for marker in (
        "answers_ping",
        "veth_to(",
        "Q1_RIGHT",
        "Q2_RIGHT",
        "BEGIN HIDDEN TESTS",
    ):
        assert marker not in text


def test_release_carries_no_solution_or_check_code() -> None:
    text = (REPO / "labs" / LAB / f"{LAB}.ipynb").read_text()
    assert_no_check_code(text)
    assert "BEGIN SOLUTION" not in text
    assert "BEGIN SOLUTION" not in text
    assert 'q1 = \\"b\\"' not in text and 'pod_a.add_veth(\\"eth0\\", pod_b' not in text


def test_veth_end_in_wrong_namespace_and_node_end_down(course: GradingCourse) -> None:
    bad = course.mutant(
        {
            "ex2-solution": PEER_IN_NODE,
            "ex4-solution": node_wiring("up"),
            "answer-q2": 'q2 = "a"',
        }
    )
    result = course.grade("wrongns-nodedown-q2", bad)
    assert_caught(result, "check-q2", "q2: that is not what the kernel does")
    assert_caught(result, "check-ex2", "the other end of pod-a's eth0 is in the wrong namespace")
    assert "the peer end is in node1" in result.cell_text("check-ex2")
    assert_caught(result, "check-ex4", "node1's veth-c is DOWN")


def test_link_down_and_containers_in_different_pods(course: GradingCourse) -> None:
    bad = course.mutant(
        {
            "ex2-solution": POD_B_LINK_DOWN,
            "ex3-solution": SERVER_IN_POD_B,
            "ex4-solution": SHELL_VETH_D_LEFT_DOWN,
        }
    )
    result = course.grade("linkdown-otherpod-shell", bad)
    assert_caught(result, "check-ex2", "pod-b's eth0 is DOWN")
    assert_caught(result, "check-ex4", "node1's veth-d is DOWN")
    assert "%%ns node1: ip link set veth-d up" in result.cell_text("check-ex4")
    assert_caught(result, "check-ex3", "nothing answers on 127.0.0.1:8080 inside pod-a")
    assert "started in different namespaces" in result.cell_text("check-ex3")


def test_server_bound_to_every_address_faults_left_and_wrong_q3(course: GradingCourse) -> None:
    bad = course.mutant(
        {
            "ex3-solution": SERVER_ON_ALL_ADDRESSES,
            "breakfix-solution": "pass",  # the faults stay: no repair
            "answer-q3": 'q3 = "d"',
        }
    )
    result = course.grade("bind-all-faults-q3", bad)
    assert_caught(result, "check-ex3", "reachable from pod-b through the veth")
    assert result.cells["check-ex2"].score == 2
    assert_caught(result, "check-breakfix", "not repaired yet")
    assert "hint:" in result.cell_text("check-breakfix")
    assert_caught(result, "check-q3", "why not 'd': an interface needs no address")


def test_python_instead_of_shell_cells_gets_full_marks(course: GradingCourse) -> None:
    """Exercise 4 and the repair done with the Python API instead of `ip` commands."""
    variant = course.mutant(
        {"ex4-solution": node_wiring("none"), "breakfix-solution": PYTHON_REPAIR}
    )
    assert_full_marks(course.grade("python-variant", variant))


def test_forged_grader_functions_score_nothing(course: GradingCourse) -> None:
    # no real work anywhere: exercise 4 and question 2 do not depend on pod-a, so they are
    # emptied too (a right prediction written as a literal is real work)
    forged = course.mutant(
        {
            "ex1-solution": FORGE_GRADER,
            "ex4-solution": "pass",
            "answer-q2": "pass",
            "answer-q3": "pass",
            "breakfix-solution": "pass",
        }
    )
    result = course.grade("forge-grader", forged)
    assert_zero(result)
    assert "everything is fine" not in result.cell_text("check-ex1")


def test_invented_replies_silenced_errors_and_always_equal_score_nothing(
    course: GradingCourse,
) -> None:
    bad = course.mutant(
        {
            "ex1-solution": FORGE_PACKETS,
            "answer-q1": always_equal("q1", "a"),
            "answer-q2": always_equal("q2", "a"),
        }
    )
    result = course.grade("forge-packets", bad)
    assert_caught(result, "check-ex1", "pod-a's lo is DOWN")
    assert_caught(result, "check-q1", "no answer given")
    assert_caught(result, "check-q2", "no answer given")


# --- the learner's self-check, as the "done means" states it ---------------------------
def _k8snet_check(*args: str) -> subprocess.CompletedProcess[str]:
    k8snet = str(Path(sys.executable).parent / "k8snet")
    return subprocess.run(
        [k8snet, "check", LAB, *args], capture_output=True, text=True, timeout=300
    )


def test_k8snet_check_untouched_release_scores_zero_with_feedback() -> None:
    out = _k8snet_check(str(REPO / "labs" / LAB / f"{LAB}.ipynb"))
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == "score: 0/12"
    assert "there is no pod-a namespace" in out.stdout
    assert "hint:" in out.stdout and "expected:" in out.stdout


def test_k8snet_check_completed_copy_scores_full(tmp_path: Path) -> None:
    copy = tmp_path / f"{LAB}.ipynb"
    shutil.copy(REPO / "solutions" / LAB / f"{LAB}.ipynb", copy)
    out = _k8snet_check(str(copy))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "score: 12/12"
