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

The helpers after the harness are what every lab's tests share: a module-scoped `course`
fixture (`course = lab_course(LAB)`), a solution cell edited into a mutant (`source`, `edit`,
`drop`), an answer that claims to equal everything (`always_equal`), and, for the tests that
run a check directly against a live cluster, `run_check` and `verdict_caught`.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from course.topology import Cluster
from grader import nbtools
from grader.grading import reap_orphans
from grader.labs import CheckContext, load_lab
from grader.nbtools import GradeResult
from grader.verdict import Verdict

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


def lab_course(lab: str) -> Any:
    """A module-scoped `course` fixture: one scratch course for all of a module's round trips.

    In a test module: `course = lab_course(LAB)`; tests then take `course` as usual.
    """

    @pytest.fixture(scope="module")
    def course() -> Iterator[GradingCourse]:
        c = GradingCourse.open(lab)
        yield c
        c.close()

    return course


# --- mutants: a solution cell edited the way a learner gets it wrong ----------------------
Notebook = GradingCourse | dict[str, Any]


def source(of: Notebook, grade_id: str) -> str:
    """The source of cell `grade_id` in a course's solution (or in the notebook `of`)."""
    nb = of.solution() if isinstance(of, GradingCourse) else of
    return "".join(find_cell(nb, grade_id)["source"])


def edit(of: Notebook, grade_id: str, old: str, new: str) -> str:
    """That source with `old` replaced: `old` must be there, so a mutant never silently equals
    the solution after the solution changed."""
    text = source(of, grade_id)
    assert old in text, f"{old!r} not in {grade_id}"
    return text.replace(old, new)


def drop(of: Notebook, grade_id: str, pattern: str) -> str:
    """That source without the lines matching the regex `pattern` (at least one must)."""
    lines = source(of, grade_id).splitlines()
    kept = [ln for ln in lines if not re.search(pattern, ln)]
    assert len(kept) < len(lines), f"{pattern!r} matched nothing"
    return "\n".join(kept)


def always_equal(name: str, value: str) -> str:
    """A cheater's answer cell: `name` bound to a str subclass that claims to equal anything
    (and survives `.strip().lower()`); answers are read as literals, so it must earn nothing."""
    return f"""
class AlwaysEqual(str):
    def __eq__(self, other):
        return True
    def __ne__(self, other):
        return False
    def lower(self):
        return self
    def strip(self):
        return self
    __hash__ = str.__hash__

{name} = AlwaysEqual({value!r})
"""


# --- checks run directly against a live cluster (no nbgrader) -----------------------------
def cluster_context(cluster: Cluster, lab_id: str, **answers: object) -> CheckContext:
    """What a check gets for `cluster`'s run, with the literal `answers`."""
    return CheckContext(lab_id, cluster.prefix, tuple(cluster.record.namespaces), dict(answers))


def run_check(lab_id: str, cluster: Cluster, check_id: str, **answers: object) -> Verdict:
    """Run one check of the lab's table against `cluster`; its verdict is printed for -s runs.

    A module binds its lab once: `run = functools.partial(run_check, LAB_ID)`.
    """
    verdict = load_lab(lab_id).check(check_id).run(cluster_context(cluster, lab_id, **answers))
    print(verdict.render())
    return verdict


def verdict_caught(
    verdict: Verdict, summary: str, *texts: str, where: tuple[str, ...] = ()
) -> None:
    """A failed verdict: `summary` in its summary, each text in the fields `where` names
    (default: anywhere in it), and what was sent, what was expected and a hint all said."""
    text = verdict.render()
    assert not verdict.passed, text
    assert summary in verdict.summary, text
    haystack = " ".join(getattr(verdict, f) for f in where) if where else text
    for part in texts:
        assert part in haystack, f"{part!r} not in {where or 'the verdict'}:\n{text}"
    assert verdict.sent and verdict.expected and verdict.hint, text


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
