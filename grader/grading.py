"""Self-check for learners and batch grading for instructors, on top of `grader.executor`.

`self_check` runs a notebook with the same executor nbgrader's autograde uses (so the
verdicts are the grader's, computed outside the kernel), without any nbgrader course or
gradebook: a learner needs nothing but the notebook.

`grade_submissions` (what `k8snet grade` runs) grades a whole class:
- before any kernel starts, the gradebook's schema is checked against nbgrader's own (no
  trigger, view or extra table) and the verifier's hashed copy is made (`grader.integrity`);
- each submission is graded by the real `nbgrader autograde`, bounded in time, in a scratch
  course folder holding only that submission and a copy of the gradebook, with its kernel
  in a sandbox (`grader.sandbox`); `--jobs N` grades N at once;
- only this (parent) process writes the course's `gradebook.db` and `autograded/`, in
  student order, from the scratch results; the schema is checked again after each one;
- a submission whose grading was interfered with is flagged (status, CSV, and nbgrader's
  own `flagged` mark for the formgrader).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import sqlite3
import tempfile
import warnings
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
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


def self_check(
    lab_id: str, notebook: Path, timeout: int = CELL_TIMEOUT, sandbox: bool = False
) -> list[CheckOutcome]:
    """Execute a copy of `notebook` from the top and judge every check of the lab."""
    lab = load_lab(lab_id)
    nb = nbformat.read(notebook, as_version=4)
    executor = VerifyingExecute(
        lab_id=lab_id,
        timeout=timeout,
        kernel_name="python3",
        interrupt_on_timeout=True,
        sandbox=sandbox,
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

    A killed kernel is a zombie until its new parent reaps it; it counts as exited. A
    detached run (`k8snet up`, for exploring with `k8snet shell`) outlives its owner on
    purpose and is left alone: only `k8snet down` removes it.
    """
    from course.kernel import Netns
    from course.runs import load_runs, remove_state_dir

    removed = []
    for rec in load_runs():
        if rec.lab == lab_id and not rec.detached and not nbtools.process_alive(rec.pid):
            for name in rec.namespaces:
                Netns(name).delete()
                removed.append(name)
            remove_state_dir(rec.prefix)  # daemon files, CNI reservations: they go too
            rec.path.unlink(missing_ok=True)
    return removed


# --- batch grading ---------------------------------------------------------------------------
FLAGGED = "flagged: grading was interfered with"


@dataclass
class Submission:
    student: str
    status: str = "ok"
    score: float = 0.0
    max_score: float = 0.0
    cells: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scratch: Path | None = None  # where it was graded, until merged into the gradebook

    @property
    def flagged(self) -> bool:
        return self.status.startswith(FLAGGED)


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


# --- the gradebook: nbgrader's schema and nothing else -----------------------------------------
class GradebookTampered(RuntimeError):
    """gradebook.db holds something nbgrader never creates (a trigger, a view, a table)."""


def schema(db: Path) -> set[tuple[str, str, str]]:
    """(type, name, sql) of every object in an SQLite file, SQLite's own excluded."""
    with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
        rows = con.execute("SELECT type, name, sql FROM sqlite_master").fetchall()
    return {(t, n, " ".join((sql or "").split())) for t, n, sql in rows}


def nbgrader_schema() -> set[tuple[str, str, str]]:
    """The schema nbgrader itself creates (a fresh gradebook in a scratch folder)."""
    from nbgrader.api import Gradebook

    with tempfile.TemporaryDirectory(prefix="k8snet-schema-") as tmp, _tools_on_path():
        db = Path(tmp) / "gradebook.db"
        with Gradebook(f"sqlite:///{db}"):
            pass
        return schema(db)


def check_schema(db: Path, expected: set[tuple[str, str, str]]) -> None:
    extra = schema(db) - expected
    if extra:
        names = ", ".join(f"{t} {n}" for t, n, _ in sorted(extra))
        raise GradebookTampered(f"{db} holds objects nbgrader never creates: {names}")


@contextmanager
def _tools_on_path() -> Iterator[None]:
    """nbgrader's Gradebook runs `alembic` by name: the venv's bin/ must be on PATH."""
    before = os.environ.get("PATH", "")
    os.environ["PATH"] = nbtools.tool_env()["PATH"]
    try:
        yield
    finally:
        os.environ["PATH"] = before


# --- one submission, in a scratch course --------------------------------------------------------
def grade_in_scratch(
    course: Path,
    lab_id: str,
    student: str,
    timeout: float,
    verifier: tuple[str, str] | None,
    sandbox: bool,
) -> Submission:
    """`nbgrader autograde` one submission in a scratch course (config, gradebook copy,
    that submission only); nothing of the real course is written here."""
    sub = Submission(student, max_score=load_lab(lab_id).total_points)
    scratch = Path(tempfile.mkdtemp(prefix="k8snet-grade-"))
    sub.scratch = scratch
    shutil.copy(course / "nbgrader_config.py", scratch / "nbgrader_config.py")
    shutil.copy(course / "gradebook.db", scratch / "gradebook.db")
    shutil.copytree(
        course / "submitted" / student / lab_id, scratch / "submitted" / student / lab_id
    )
    report = scratch / "k8snet-report.json"
    args = [f"--VerifyingExecute.report={report}", f"--VerifyingExecute.sandbox={sandbox}"]
    args += ["--VerifyingExecute.sandbox_checked=True"]  # probed once by grade_submissions
    if verifier:
        args += [f"--VerifyingExecute.verifier_copy={verifier[0]}"]
        args += [f"--VerifyingExecute.verifier_digest={verifier[1]}"]
    try:
        result = nbtools.autograde_submitted(
            scratch, lab_id, student, timeout=timeout, extra_args=args
        )
    except nbtools.NbgraderError as exc:
        sub.status = _first_error_line(str(exc))
        return sub
    except (OSError, ValueError, LookupError) as exc:
        sub.status = f"error: {exc}"
        return sub
    finally:
        if not sandbox:
            reap_orphans(lab_id)
    sub.score, sub.max_score = result.score, result.max_score
    sub.cells = {g: c.score for g, c in result.cells.items()}
    _read_report(sub, report)
    return sub


def _read_report(sub: Submission, report: Path) -> None:
    try:
        data = json.loads(report.read_text())
    except (OSError, ValueError):
        data = {"interference": ["the grading report is missing"]}
    if data.get("interference"):
        sub.status = f"{FLAGGED}: {'; '.join(data['interference'])}"[:300]
    if data.get("stopped"):
        sub.notes.append(str(data["stopped"]))
    sub.notes += [str(n) for n in data.get("notes", [])]


def merge(course: Path, lab_id: str, sub: Submission, expected: set[tuple[str, str, str]]) -> None:
    """Write one scratch result into the course: gradebook rows, the autograded folder.

    Runs in the grading parent only, one submission at a time, in student order.
    """
    from nbgrader.api import Gradebook

    scratch = sub.scratch
    if scratch is None:
        return
    try:
        check_schema(scratch / "gradebook.db", expected)
    except GradebookTampered as exc:
        sub.status, sub.score = f"{FLAGGED}: {exc}"[:300], 0.0
        sub.cells = {}
        return
    graded = scratch / "autograded" / sub.student / lab_id
    if (sub.status != "ok" and not sub.flagged) or not graded.is_dir():
        return
    with _tools_on_path(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SQLAlchemy's autoflush notes about nbgrader's models
        with Gradebook(f"sqlite:///{scratch / 'gradebook.db'}") as src:
            got = src.find_submission(lab_id, sub.student)
            timestamp = got.timestamp
            grades = {(nb.name, g.name): g.auto_score for nb in got.notebooks for g in nb.grades}
            comments = {
                (nb.name, c.name): c.auto_comment for nb in got.notebooks for c in nb.comments
            }
        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
            gb.update_or_create_student(sub.student)
            dest = gb.update_or_create_submission(lab_id, sub.student, timestamp=timestamp)
            for nb in dest.notebooks:
                for g in nb.grades:
                    g.auto_score = grades.get((nb.name, g.name), g.auto_score)
                for c in nb.comments:
                    c.auto_comment = comments.get((nb.name, c.name), c.auto_comment)
                nb.flagged = sub.flagged
            gb.db.commit()
    target = course / "autograded" / sub.student / lab_id
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(graded, target)
    check_schema(course / "gradebook.db", expected)


def grade_one(course: Path, lab_id: str, student: str, timeout: float) -> Submission:
    """One submission, sandboxed, merged into the course (kept for callers of one student)."""
    return grade_submissions(course, lab_id, timeout, only=[student])[0]


def _first_error_line(text: str) -> str:
    if "no result after" in text:
        return "timeout: " + text.splitlines()[0]
    errors = [ln for ln in text.splitlines() if "[ERROR]" in ln or "Error" in ln]
    return "error: " + (errors[-1].strip() if errors else text.splitlines()[0])[:200]


def grade_submissions(
    course: Path,
    lab_id: str,
    timeout: float = SUBMISSION_TIMEOUT,
    progress: Callable[[Submission], None] | None = None,
    jobs: int = 1,
    sandbox: bool = True,
    only: list[str] | None = None,
) -> list[Submission]:
    """Grade every submission of `lab_id`, `jobs` at a time; results in student order."""
    from grader import integrity as copies
    from grader.lifecycle import claim_copy, reap_stale_copies, release_copy

    if sandbox:
        from grader.sandbox import SandboxUnavailable, unavailable_reason

        why = unavailable_reason()
        if why:
            raise SandboxUnavailable(why)
    expected = nbgrader_schema()
    if (course / "gradebook.db").exists():
        check_schema(course / "gradebook.db", expected)
    ensure_assignment(course, lab_id)
    check_schema(course / "gradebook.db", expected)
    who = only or students(course, lab_id)
    reap_stale_copies()  # left by graders that were killed (SIGKILL cannot clean up)
    copy = copies.make_copy(copies.extra_lab_folders())  # before the first kernel
    claim_copy(copy.root)
    verifier = (str(copy.root), copy.digest)
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = [
                pool.submit(grade_in_scratch, course, lab_id, s, timeout, verifier, sandbox)
                for s in who
            ]
            results = []
            for future in futures:  # in student order: the gradebook is written in order
                sub = future.result()
                try:
                    merge(course, lab_id, sub, expected)
                finally:
                    if sub.scratch is not None:
                        shutil.rmtree(sub.scratch, ignore_errors=True)
                        sub.scratch = None
                results.append(sub)
                if progress:
                    progress(sub)
    finally:
        copies.remove_copy(copy)
        release_copy(copy.root)
    return results


def write_csv(rows: list[Submission], path: Path, lab_id: str) -> None:
    grade_ids = [c.grade_id for c in load_lab(lab_id).checks]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["student", "score", "max_score", "status", *grade_ids, "notes"])
        for r in rows:
            cells = [r.cells.get(g, "") for g in grade_ids]
            out.writerow([r.student, r.score, r.max_score, r.status, *cells, " | ".join(r.notes)])
