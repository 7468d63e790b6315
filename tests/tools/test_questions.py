"""Predictions that teach: a wrong answer gets the misconception behind the option chosen."""

from __future__ import annotations

import pytest

from grader.labs import CheckContext, load_lab
from grader.labs.common import question
from grader.labs.lab01 import Q1_WHY, Q2_WHY

Q = question(
    "q9",
    {"bridge": "a", "routed": "b"},
    "explained",
    "a dict",
    why={"bridge": {"b": "B-IN-BRIDGE"}, "routed": {"a": "A-IN-ROUTED"}},
)


def ctx(**answers: object) -> CheckContext:
    return CheckContext("lab", "kt-none", (), answers)


def test_each_wrong_part_gets_its_own_explanation_and_not_the_answer() -> None:
    verdict = Q(ctx(q9={"bridge": "b", "routed": "b"}))
    assert not verdict.passed
    assert verdict.details == ["bridge = 'b': B-IN-BRIDGE"]
    verdict = Q(ctx(q9={"bridge": "b", "routed": "a"}))
    assert verdict.details == ["bridge = 'b': B-IN-BRIDGE", "routed = 'a': A-IN-ROUTED"]
    assert "B-IN-BRIDGE" in verdict.render()
    assert Q(ctx(q9={"bridge": "a", "routed": "b"})).passed


def test_an_answer_that_is_no_option_gets_the_options() -> None:
    scalar = question("q8", "b", "right", "one of 'a', 'b'", why={"a": "A!"})
    assert scalar(ctx(q8=" A ")).details == ["why not ' A ': A!"]
    other = scalar(ctx(q8="z"))
    assert other.details == [] and other.expected == "one of 'a', 'b'"
    assert scalar(ctx(q8=["a"])).details == []  # unhashable: no crash


@pytest.mark.parametrize(
    ("lab", "check_id", "answers"),
    [
        ("02-bridge-vs-routed", "q1-ttl", ["bridge", "both", "neither"]),
        ("06-kube-proxy", "q1-printed", ["a", "c", "d"]),
        ("06-kube-proxy", "q2-conntrack", [0, 10, 11, 20, 21, 22, 5]),
        ("06-kube-proxy", "q3-established", ["b", "c"]),
    ],
)
def test_every_wrong_option_of_the_labs_is_explained(
    lab: str, check_id: str, answers: list[object]
) -> None:
    chk = load_lab(lab).check(check_id)
    name = chk.answers[0]
    seen = set()
    for answer in answers:
        verdict = chk.run(ctx(**{name: answer}))
        assert not verdict.passed and len(verdict.details) == 1, (answer, verdict.render())
        seen.add(verdict.details[0].split(": ", 1)[1])
    assert len(seen) >= min(3, len(answers)), "explanations are per option, not one for all"


@pytest.mark.parametrize(
    ("check_id", "parts"),
    [
        ("q2-mac", {"bridge": ["node"], "routed": ["sender"]}),
        ("q3-routes", {"bridge": ["b", "c"], "routed": ["a", "c"]}),
        ("q4-fdb", {"bridge": ["b", "c"], "routed": ["a", "c"]}),
    ],
)
def test_lab02_dict_questions_explain_each_mode(check_id: str, parts: dict[str, list[str]]) -> None:
    chk = load_lab("02-bridge-vs-routed").check(check_id)
    right = {"q2-mac": {"bridge": "sender", "routed": "node"}}.get(
        check_id, {"bridge": "a", "routed": "b"}
    )
    for mode, wrongs in parts.items():
        for wrong in wrongs:
            verdict = chk.run(ctx(**{chk.answers[0]: {**right, mode: wrong}}))
            assert len(verdict.details) == 1 and verdict.details[0].startswith(f"{mode} = ")


def test_lab01_questions_explain_every_wrong_option() -> None:
    assert set(Q1_WHY) == {"a", "c"} and set(Q2_WHY) == {"a", "c"}
    q1 = load_lab("01-netns-veth").check("q1-delete-one-end")
    verdict = q1.run(ctx(q1="c"))
    assert verdict.details == [f"why not 'c': {Q1_WHY['c']}"]
