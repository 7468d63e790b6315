"""Round-trip harness for lab notebooks, through the real `nbgrader autograde`.

Every lab's tests use it the same way:

    course = GradingCourse.open("01-netns-veth")            # scratch course, assignment generated
    result = course.grade("solution", course.solution())     # (a) full marks
    result = course.grade("release", course.release())       # (b) zero exercise points
    bad = course.mutant({"ex2-solution": WRONG_SOURCE})      # (c) a known wrong answer
    result = course.grade("mutant-down", bad)
    assert_caught(result, "check-ex2", "is DOWN")            #     fails where it should, saying why

Grading happens in a temporary course folder (config copied from the repository), so no
gradebook or submission is ever left in the repository.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grader import nbtools
from grader.grading import reap_orphans
from grader.nbtools import GradeResult

REPO = nbtools.REPO
FIXTURES = REPO / "tests" / "fixtures"


@dataclass
class GradingCourse:
    """A scratch nbgrader course for one lab, alive until `close()`."""

    lab: str
    source_root: Path
    course: Path

    @classmethod
    def open(cls, lab: str, source_root: Path = REPO) -> GradingCourse:
        course = Path(tempfile.mkdtemp(prefix="k8snet-course-"))
        shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
        shutil.copytree(source_root / "solutions" / lab, course / "solutions" / lab)
        nbtools.nbgrader(["generate_assignment", lab, "--force"], cwd=course)
        return cls(lab, source_root, course)

    def close(self) -> None:
        reap_orphans(self.lab)
        shutil.rmtree(self.course, ignore_errors=True)

    # --- notebooks to submit ---------------------------------------------------------------
    def solution(self) -> dict[str, Any]:
        path = self.source_root / "solutions" / self.lab / f"{self.lab}.ipynb"
        return json.loads(path.read_text())

    def release(self) -> dict[str, Any]:
        """The release notebook exactly as nbgrader generated it in this course."""
        path = self.course / "labs" / self.lab / f"{self.lab}.ipynb"
        return json.loads(path.read_text())

    def mutant(self, replacements: dict[str, str], base: dict[str, Any] | None = None) -> Any:
        """The solution (or `base`) with the source of the named cells replaced."""
        nb = copy.deepcopy(base or self.solution())
        for grade_id, source in replacements.items():
            cell = find_cell(nb, grade_id)
            cell["source"] = source
        return nb

    def without(self, grade_id: str, base: dict[str, Any] | None = None) -> Any:
        """The solution (or `base`) with one cell deleted, as a careless student would."""
        nb = copy.deepcopy(base or self.solution())
        nb["cells"] = [c for c in nb["cells"] if _grade_id(c) != grade_id]
        return nb

    # --- grading ----------------------------------------------------------------------------
    def grade(
        self,
        student: str,
        notebook: dict[str, Any],
        feedback: bool = False,
        extra_args: list[str] | None = None,
    ) -> GradeResult:
        """Submit `notebook` as `student` and run `nbgrader autograde` on it."""
        dest = self.course / "submitted" / student / self.lab
        dest.mkdir(parents=True, exist_ok=True)
        (dest / f"{self.lab}.ipynb").write_text(json.dumps(notebook))
        try:
            return nbtools.autograde_submitted(
                self.course, self.lab, student, feedback=feedback, extra_args=extra_args
            )
        finally:
            # As `k8snet grade` does: nbgrader stops the kernel, possibly mid-teardown.
            reap_orphans(self.lab)


def find_cell(nb: dict[str, Any], grade_id: str) -> dict[str, Any]:
    for cell in nb["cells"]:
        if _grade_id(cell) == grade_id:
            return cell
    raise KeyError(f"no cell with grade_id {grade_id!r}")


def _grade_id(cell: dict[str, Any]) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


# --- assertions ----------------------------------------------------------------------------
def assert_full_marks(result: GradeResult) -> None:
    lost = {g: (c.score, c.max_score) for g, c in result.cells.items() if c.score != c.max_score}
    assert not lost, f"cells below full marks: {lost}\n" + _texts(result, lost)
    assert result.max_score > 0


def assert_zero(result: GradeResult) -> None:
    won = {g: c.score for g, c in result.cells.items() if c.score}
    assert not won, f"cells with points: {won}\n" + _texts(result, won)


def assert_caught(result: GradeResult, grade_id: str, text: str) -> None:
    """Cell `grade_id` scored 0 and its output (the verdict) contains `text`."""
    cell = result.cells[grade_id]
    out = result.cell_text(grade_id)
    assert cell.score == 0, f"{grade_id} got {cell.score}/{cell.max_score}:\n{out}"
    assert text in out, f"{grade_id}: expected {text!r} in its feedback:\n{out}"


def assert_scores(result: GradeResult, expected: dict[str, float]) -> None:
    got = {g: result.cells[g].score for g in expected}
    assert got == expected, f"scores {got} != {expected}\n" + _texts(result, expected)


def _texts(result: GradeResult, ids: Any) -> str:
    return "\n".join(f"--- {g}:\n{result.cell_text(g)}" for g in ids)
