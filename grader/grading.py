"""Self-check for learners and batch grading for instructors, on top of `grader.executor`.

`self_check` runs a notebook with the same executor nbgrader's autograde uses (so the
verdicts are the grader's, computed outside the kernel), without any nbgrader course or
gradebook: a learner needs nothing but the notebook. `grade_submissions` runs the real
`nbgrader autograde` once per student, each bounded in time, and keeps going when one
submission fails or hangs.
"""

from __future__ import annotations

import csv
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from nbgrader.utils import setenv

from grader import nbtools
from grader.executor import VerifyingExecute
from grader.labs import Check, load_lab
from grader.verdict import Verdict

# Per-cell timeout; nbgrader_config.py sets the same value for autograde (a test checks).
CELL_TIMEOUT = 60
# Wall-clock budget for one whole submission in `k8snet grade`.
SUBMISSION_TIMEOUT = 900.0


@dataclass
class CheckOutcome:
    check: Check
    verdict: Verdict

    @property
    def points(self) -> float:
        return self.check.points if self.verdict.passed else 0.0


def self_check(lab_id: str, notebook: Path, timeout: int = CELL_TIMEOUT) -> list[CheckOutcome]:
    """Execute a copy of `notebook` from the top and judge every check of the lab."""
    lab = load_lab(lab_id)
    nb = nbformat.read(notebook, as_version=4)
    executor = VerifyingExecute(
        lab_id=lab_id, timeout=timeout, kernel_name="python3", interrupt_on_timeout=True
    )
    try:
        with setenv(NBGRADER_EXECUTION="autograde"):  # as nbgrader does: the kernel inherits it
            executor.preprocess(nb, {"metadata": {"path": str(notebook.parent.resolve())}})
    finally:
        reap_orphans(lab_id)
    return [
        CheckOutcome(chk, executor.verdicts.get(chk.grade_id) or _missing(chk))
        for chk in lab.checks
    ]


def _missing(chk: Check) -> Verdict:
    return Verdict.fail(
        f"{chk.title}: its check cell is missing",
        sent=f"looked for the cell with grade_id {chk.grade_id!r}",
        observed="not in this notebook (deleted?)",
        expected="every check cell of the release notebook",
        hint="copy the cell back from the release notebook in labs/ (nbgrader re-adds it too)",
    )


def reap_orphans(lab_id: str) -> list[str]:
    """Delete namespaces of `lab_id` runs whose owner (a kernel) has exited.

    A killed kernel is a zombie until its new parent reaps it; it counts as exited.
    """
    from course.kernel import Netns
    from course.runs import load_runs

    removed = []
    for rec in load_runs():
        if rec.lab == lab_id and not nbtools.process_alive(rec.pid):
            for name in rec.namespaces:
                Netns(name).delete()
                removed.append(name)
            rec.path.unlink(missing_ok=True)
    return removed


# --- batch grading ---------------------------------------------------------------------------
@dataclass
class Submission:
    student: str
    status: str = "ok"
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float] = field(default_factory=dict)


def students(course: Path, lab_id: str) -> list[str]:
    root = course / "submitted"
    return sorted(p.parent.name for p in root.glob(f"*/{lab_id}") if p.is_dir())


def ensure_assignment(course: Path, lab_id: str) -> None:
    """Put the lab into the course's gradebook (nbgrader needs it to autograde).

    `generate_assignment` is the only nbgrader command that records notebooks and cells;
    its release copy goes to a scratch folder so the course's `labs/` stays untouched.
    """
    with tempfile.TemporaryDirectory(prefix="k8snet-release-") as tmp:
        nbtools.nbgrader(
            [
                "generate_assignment",
                lab_id,
                "--force",
                f"--CourseDirectory.release_directory={tmp}",
            ],
            cwd=course,
        )


def grade_one(course: Path, lab_id: str, student: str, timeout: float) -> Submission:
    sub = Submission(student, max_score=load_lab(lab_id).total_points)
    try:
        result = nbtools.autograde_submitted(course, lab_id, student, timeout=timeout)
    except nbtools.NbgraderError as exc:
        sub.status = _first_error_line(str(exc))
        return sub
    except (OSError, ValueError, LookupError) as exc:
        sub.status = f"error: {exc}"
        return sub
    finally:
        reap_orphans(lab_id)
    sub.score, sub.max_score = result.score, result.max_score
    sub.cells = {g: c.score for g, c in result.cells.items()}
    return sub


def _first_error_line(text: str) -> str:
    if "no result after" in text:
        return "timeout: " + text.splitlines()[0]
    errors = [ln for ln in text.splitlines() if "[ERROR]" in ln or "Error" in ln]
    return "error: " + (errors[-1].strip() if errors else text.splitlines()[0])[:200]


def grade_submissions(
    course: Path,
    lab_id: str,
    timeout: float = SUBMISSION_TIMEOUT,
    progress: Callable[[str], None] | None = None,
) -> list[Submission]:
    ensure_assignment(course, lab_id)
    results = []
    for student in students(course, lab_id):
        results.append(grade_one(course, lab_id, student, timeout))
        if progress:
            progress(student)
    return results


def write_csv(rows: list[Submission], path: Path, lab_id: str) -> None:
    grade_ids = [c.grade_id for c in load_lab(lab_id).checks]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["student", "score", "max_score", "status", *grade_ids])
        for r in rows:
            cells = [r.cells.get(g, "") for g in grade_ids]
            out.writerow([r.student, r.score, r.max_score, r.status, *cells])
