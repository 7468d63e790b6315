"""Plain `nbgrader autograde` (the instructor using nbgrader directly, no option) grades in
the sandbox whenever one can run here, and says so in one line when it cannot (issue 14).

One fixture-lab submission that does the exercise and also tries to read the gradebook and
`solutions/`: graded with nbgrader's own command line and the course's config, it scores
full marks and reads nothing. The fallback is judged on the executor itself.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from grader import nbtools, sandbox
from grader.executor import VerifyingExecute
from tests.grading import attacks
from tests.nbharness import find_cell

FIXTURES = nbtools.REPO / "tests" / "fixtures"
LAB = "00-fixture"
EXERCISE = """
subprocess.run(["ip", "netns", "add", pod_name], check=True)
subprocess.run(["ip", "-n", pod_name, "link", "set", "lo", "up"], check=True)
"""


@pytest.mark.slow
@pytest.mark.skipif(bool(sandbox.unavailable_reason_once()), reason="no sandbox here")
def test_plain_nbgrader_autograde_sandboxes_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("K8SNET_EXTRA_LABS", str(FIXTURES / "labs"))  # the verifier's copy
    with nbtools.scratch_course(LAB, FIXTURES) as course:
        result, printed, secrets = grade_snooper(course, tmp_path)

    assert result.score == result.max_score == 3, result.cells
    for path in secrets:
        assert f"not readable: {path}" in printed, printed
    assert "READABLE" not in printed and "TRIGGER WRITTEN" not in printed, printed


def grade_snooper(course: Path, tmp_path: Path) -> tuple[nbtools.GradeResult, str, list[str]]:
    secrets = [
        str(course / "gradebook.db"),
        str(nbtools.REPO / "solutions" / "01-netns-veth" / "01-netns-veth.ipynb"),
    ]
    snoop = attacks.READ_SECRETS_AND_TRIGGER.replace("@SECRETS@", repr(secrets))
    nb = json.loads((FIXTURES / "solutions" / LAB / f"{LAB}.ipynb").read_text())
    find_cell(nb, "ex1-solution")["source"] = EXERCISE + snoop.replace("@GRADEBOOK@", secrets[0])
    submission = tmp_path / f"{LAB}.ipynb"
    submission.write_text(json.dumps(nb))
    nbtools.submit(course, LAB, "student", submission)
    result = nbtools.autograde_submitted(course, LAB, "student", timeout=300)
    return result, result.cell_text("ex1-solution"), secrets


def test_without_a_sandbox_plain_autograde_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(sandbox, "_REASON", ["bubblewrap is not installed (apt-get ...)"])
    executor = VerifyingExecute()
    executor.log = logging.getLogger("test-autograde-default")
    with caplog.at_level(logging.WARNING, logger="test-autograde-default"):
        assert executor._sandboxed() is False
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert "grading WITHOUT a sandbox: bubblewrap is not installed" in lines[0]
    assert VerifyingExecute(sandbox=False)._sandboxed() is False  # an explicit choice: silent
    assert VerifyingExecute(sandbox=True)._sandboxed() is True
