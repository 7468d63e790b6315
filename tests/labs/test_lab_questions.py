"""Predictions that teach, labs 03, 04, 05, 07: every wrong option gets its own explanation.

Questions are judged from the answer alone (no namespace, no kernel), so every option of every
question is tried here in well under a second; the round trips in test_lab0N.py prove that one
wrong answer per lab reaches nbgrader's feedback with its explanation.
"""

from __future__ import annotations

import pytest

from course.netfilter import path
from grader.labs import CheckContext, load_lab
from grader.labs.lab05 import path_misconceptions
from grader.verdict import Verdict

LAB03_Q1 = {
    "outer_src": "192.168.1.11",
    "outer_dst": "192.168.1.12",
    "dport": 8472,
    "vni": 1,
    "inner_src": "10.244.1.2",
    "inner_dst": "10.244.2.2",
}


def judge(lab: str, check_id: str, answer: object) -> Verdict:
    chk = load_lab(lab).check(check_id)
    return chk.run(CheckContext(lab, "kt-none", (), {chk.answers[0]: answer}))


@pytest.mark.parametrize(
    ("lab", "check_id", "right", "wrongs"),
    [
        ("03-across-nodes", "q2", "c", ["a", "b", "d"]),
        ("03-across-nodes", "q3", "b", ["a", "c"]),
        ("04-cni-plugin", "q1-del-namespace-gone", "b", ["a", "c"]),
        ("04-cni-plugin", "q2-forgetful-del", "c", ["a", "b"]),
        ("05-netfilter-order", "q2-match", "b", ["a", "c"]),
        ("05-netfilter-order", "q3-nat-packets", 1, [0, 2, 7]),
        ("05-netfilter-order", "q4-refused", "c", ["a", "b", "d"]),
        ("07-nodeport-masquerade", "q1-no-snat", "b", ["a", "c", "d"]),
        ("07-nodeport-masquerade", "q2-trace", "b", ["a", "c"]),
        ("07-nodeport-masquerade", "q3-local", "b", ["a", "c"]),
        ("07-nodeport-masquerade", "q4-hairpin", "10.244.1.1", ["10.244.1.2", "10.96.0.30",
                                                                "192.168.1.11", "127.0.0.1"]),
        ("07-nodeport-masquerade", "q5-hairpin-masq", "b", ["a", "c"]),
    ],
)  # fmt: skip
def test_every_wrong_option_gets_its_own_explanation(
    lab: str, check_id: str, right: object, wrongs: list[object]
) -> None:
    ok = judge(lab, check_id, right)
    assert ok.passed and "right." in ok.summary
    seen = set()
    for wrong in wrongs:
        verdict = judge(lab, check_id, wrong)
        assert not verdict.passed
        assert verdict.details and verdict.details[0].startswith(f"why not {wrong!r}: "), (
            wrong,
            verdict.render(),
        )
        seen.add(verdict.details[0].split(": ", 1)[1])
    assert len(seen) == len(wrongs), "one explanation per option, not one for all"


@pytest.mark.parametrize(
    ("part", "wrong", "text"),
    [
        ("outer_src", "10.244.1.2", "that is a pod address, from the inner packet"),
        ("outer_dst", "192.168.1.11", "that is the echo reply"),
        ("dport", 4789, "4789 is the port IANA assigned"),
        ("vni", "1", "written as a string"),
        ("inner_src", "192.168.1.11", "that is a node IP, from the outer header"),
        ("inner_dst", "10.244.9.9", "the outer header is added by node1's flannel.1"),
    ],
)
def test_lab03_headers_explain_each_wrong_field(part: str, wrong: object, text: str) -> None:
    verdict = judge("03-across-nodes", "q1", {**LAB03_Q1, part: wrong})
    assert not verdict.passed and len(verdict.details) == 1
    assert verdict.details[0].startswith(f"{part} = {wrong!r}: ") and text in verdict.details[0]


def test_lab03_reachability_explains_each_wrong_mode() -> None:
    right = {"host-gw": False, "bgp": False, "vxlan": True}
    assert judge("03-across-nodes", "q4", right).passed
    texts = {
        "host-gw": "Nexthop has invalid gateway",
        "bgp": "knows the two node subnets and no pod range",
        "vxlan": "needs only that the node IPs reach each other",
    }
    for mode, text in texts.items():
        verdict = judge("03-across-nodes", "q4", {**right, mode: not right[mode]})
        assert len(verdict.details) == 1 and text in verdict.details[0], verdict.render()


FORWARD = [f"{t} {c}" for t, c in path("forward")]
LOCAL_IN = [f"{t} {c}" for t, c in path("local-in")]


@pytest.mark.parametrize(
    ("kind", "answer", "text"),
    [
        ("forward", ["nat PREROUTING", "mangle PREROUTING"], "run by priority, lowest first"),
        ("forward", [*FORWARD[:3], "filter INPUT"], "a forwarded packet is not for node1"),
        ("forward", ["filter PREROUTING"], "filtering happens after the routing decision"),
        ("forward", ["nat FORWARD"], "never in FORWARD"),
        ("forward", ["raw PREROUTING", "raw PREROUTING"], "twice"),
        ("forward", FORWARD[:-1], "missing 'nat POSTROUTING'"),
        ("local-in", [*LOCAL_IN[:5], "security INPUT", "nat INPUT"],
         "150 for security is iptables-nft's choice"),
        ("local-in", ["raw PREROUTING", "mangle FORWARD"], "found 192.168.1.11 to be node1's"),
        ("local-out", ["raw PREROUTING"], "starts at OUTPUT"),
        ("local-out", ["raw OUTPUT", "mangle POSTROUTING", "mangle OUTPUT"],
         "the hooks come in the order OUTPUT -> POSTROUTING"),
    ],
)  # fmt: skip
def test_lab05_path_prediction_names_the_misconception(
    kind: str, answer: list[str], text: str
) -> None:
    got = [(s.split()[0], s.split()[1]) for s in answer]
    lines = path_misconceptions(got, kind)  # type: ignore[arg-type]
    assert len(lines) == 1 and text in lines[0], lines
    assert path_misconceptions(path(kind), kind) == []  # type: ignore[arg-type]


def test_lab05_prediction_check_carries_the_explanation() -> None:
    """The check itself (no lab run: the trace falls back to the model) adds the line."""
    wrong = ["nat PREROUTING", "mangle PREROUTING", *FORWARD[2:]]
    verdict = judge("05-netfilter-order", "q1-forward", wrong)
    assert not verdict.passed
    assert any("why not 'nat PREROUTING' before" in d for d in verdict.details)
