"""What a check cell in a lab notebook calls: `check("01-netns-veth", "ex1-loopback")`.

The check runs in a fresh, isolated Python process (`grader.verify`) that finds this
kernel's lab run and inspects the namespaces and the wire, so the learner sees the same
verdict the grader will reach. This function is a convenience for the learner only: when
grading, `grader.executor.VerifyingExecute` re-runs every check from the grading process and
replaces the cell's outputs with its own verdict, so nothing defined in this kernel
(including this function) can change a grade.
"""

from __future__ import annotations

import json
import os
from typing import Any

from course.notebook import quiet_errors
from grader.labs import load_lab
from grader.verify import verify_in_subprocess


class CheckFailed(AssertionError):
    """Raised so the cell shows as failed (nbgrader scores a cell with an error as 0)."""


# The verdict printed just above already says what was sent, seen and expected: under
# IPython a failed check ends with this one line, not a traceback into this module.
quiet_errors(CheckFailed, lambda exc: f"{exc} (see the verdict above)")


def _answers_from_kernel(names: tuple[str, ...]) -> dict[str, object]:
    """Plain JSON values of the answer variables in the notebook namespace, if any.

    A value that does not survive a JSON round trip (an object pretending to equal
    anything) is left out, which the check reports as "no answer given".
    """
    try:
        from IPython import get_ipython

        user_ns: dict[str, Any] = get_ipython().user_ns  # type: ignore[union-attr]
    except (ImportError, AttributeError):
        return {}
    answers: dict[str, object] = {}
    for name in names:
        if name in user_ns:
            try:
                answers[name] = json.loads(json.dumps(user_ns[name]))
            except (TypeError, ValueError):
                continue
    return answers


def check(lab: str, check_id: str) -> None:
    """Run one check of `lab` against this kernel's lab run; print the verdict.

    While a grader executes the notebook (nbgrader autograde or `k8snet check`, which set
    NBGRADER_EXECUTION=autograde) the grading process judges the cell itself and replaces
    its output, so the kernel skips its own run and saves the time.
    """
    if os.environ.get("NBGRADER_EXECUTION") == "autograde":
        print(f"{check_id}: judged by the grader, outside this kernel")
        return
    chk = load_lab(lab).check(check_id)
    answers = _answers_from_kernel(chk.answers)
    verdict = verify_in_subprocess(lab, check_id, pid=os.getpid(), answers=answers)
    print(verdict.render())
    if verdict.journey_dot:
        from grader.journey import show

        show(verdict)  # the packet's path as a picture, under the verdict text
    if not verdict.passed:
        raise CheckFailed(verdict.summary)
