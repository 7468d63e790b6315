"""Building blocks every lab's checks share.

A check is easiest to read as a chain of small inspections, each of which either passes or
stops the check with a complete failed verdict: `raise fail(...)` inside a function wrapped
with `@judged`. Predict-then-observe questions are judged by `question(...)`.
"""

from __future__ import annotations

from collections.abc import Callable

from grader.labs import CheckContext
from grader.verdict import Verdict


class Failed(Exception):
    """Carries the first failed verdict out of a chain of small inspections."""

    def __init__(self, verdict: Verdict) -> None:
        super().__init__(verdict.summary)
        self.verdict = verdict


def fail(summary: str, *, sent: str, observed: str, expected: str, hint: str) -> Failed:
    return Failed(Verdict.fail(summary, sent=sent, observed=observed, expected=expected, hint=hint))


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
) -> Callable[[CheckContext], Verdict]:
    """A predict-then-observe answer: right only if it equals `right` and has its type.

    The answer was read from the notebook's source as a plain literal (never from the
    learner's kernel), so an object that claims to equal everything cannot get here.
    """

    def judge(ctx: CheckContext) -> Verdict:
        answer = ctx.answers.get(name)
        if answer == right and type(answer) is type(right):
            return Verdict.ok(f"{name}: right. {explain}")
        return Verdict.fail(
            f"{name}: not what {evidence}",
            sent=f"read your answer {name} from the notebook",
            observed=f"{name} = {answer!r}",
            expected=options,
            hint=hint,
        )

    judge.__name__ = f"check_{name}"
    return judge
