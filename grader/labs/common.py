"""Building blocks every lab's checks share.

A check is easiest to read as a chain of small inspections, each of which either passes or
stops the check with a complete failed verdict: `raise fail(...)` inside a function wrapped
with `@judged`. Predict-then-observe questions are judged by `question(...)`; each wrong
option carries the explanation of the misconception behind it (`why`), which a wrong answer
gets back instead of only the list of options.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from course.kernel import Netns
from grader.labs import Check, CheckContext
from grader.verdict import Verdict


class Failed(Exception):
    """Carries the first failed verdict out of a chain of small inspections."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.summary)
        self.verdict = verdict


def fail(
    summary: str,
    *,
    sent: str,
    observed: str,
    expected: str,
    hint: str,
    details: list[str] | None = None,
) -> Failed:
    verdict = Verdict.fail(summary, sent=sent, observed=observed, expected=expected, hint=hint)
    verdict.details = list(details or [])
    return Failed(verdict)


def open_ns(ctx: CheckContext, role: str) -> Netns:
    """The run's namespace for `role`; a check that finds it missing stops with this verdict."""
    ns = Netns(ctx.ns(role))
    if not ns.exists():
        raise fail(
            f"namespace {ns.name} does not exist",
            sent=f"looked for /run/netns/{ns.name}",
            observed="not found",
            expected="the lab cluster's namespaces, built by the setup cell",
            hint="run the notebook from the top, in order, without restarting the kernel",
        )
    return ns


def judged(check: Callable[[CheckContext], Verdict]) -> Callable[[CheckContext], Verdict]:
    """Turn a check written as a chain of `raise fail(...)` into one returning a Verdict."""

    def run(ctx: CheckContext) -> Verdict:
        try:
            return check(ctx)
        except Failed as exc:
            return exc.verdict

    run.__doc__ = check.__doc__
    run.__name__ = check.__name__
    return run


def question(
    name: str,
    right: object,
    explain: str,
    options: str,
    *,
    evidence: str = "the kernel shows",
    hint: str = "run the observation cells after the question and compare",
    why: Mapping[Any, Any] | None = None,
    why_other: str = "",
) -> Callable[[CheckContext], Verdict]:
    """A predict-then-observe answer: right only if it equals `right` and has its type.

    The answer was read from the notebook's source as a plain literal (never from the
    learner's kernel), so an object that claims to equal everything cannot get here.

    `why` maps each wrong option to the misconception behind it; for an answer that is a
    dict (one choice per mode), it maps each key to such a mapping. A wrong answer gets the
    explanation for exactly what it chose (`why_other` for anything else), and not the right
    option: the observation cells show that, and the learner may still change the answer.
    """

    def judge(ctx: CheckContext) -> Verdict:
        answer = ctx.answers.get(name)
        if answer == right and type(answer) is type(right):
            return Verdict.ok(f"{name}: right. {explain}")
        verdict = Verdict.fail(
            f"{name}: not what {evidence}",
            sent=f"read your answer {name} from the notebook",
            observed=f"{name} = {answer!r}",
            expected=options,
            hint=hint,
        )
        verdict.details = misconceptions(answer, right, why or {}, why_other)
        return verdict

    judge.__name__ = f"check_{name}"
    return judge


def answer_check(check_id: str, grade_id: str, title: str, judge: Callable[..., Verdict]) -> Check:
    """The table entry of a 1-point question: cell `check-NAME` grades the literal `NAME`,
    read from the notebook; no lab run is needed to judge it."""
    name = grade_id.removeprefix("check-")
    return Check(check_id, grade_id, 1, title, judge, answers=(name,), needs_run=False)


def misconceptions(
    answer: object, right: object, why: Mapping[Any, Any], why_other: str = ""
) -> list[str]:
    """What is wrong with each wrong part of `answer`, as lines for the verdict's details."""
    if isinstance(right, dict):
        if not isinstance(answer, dict):
            return []
        lines = []
        for key, want in right.items():
            got = answer.get(key)
            if got != want:
                text = _lookup(why.get(key, {}), got) or why_other
                lines.append(f"{key} = {got!r}: {text}" if text else f"{key} = {got!r} is not it")
        return lines
    text = _lookup(why, answer) or why_other
    return [f"why not {answer!r}: {text}"] if text else []


def _lookup(why: Mapping[Any, Any], answer: object) -> str:
    """The explanation for `answer`, matching a string answer without case or spaces."""
    if isinstance(answer, str):
        answer = answer.strip().lower()
    try:
        return str(why.get(answer, ""))
    except TypeError:  # an unhashable answer (a list) matches no option
        return ""
