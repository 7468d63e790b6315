"""nbgrader glue: release `labs/` from `solutions/`, autograde in a scratch course folder.

Every nbgrader command here runs in a temporary course folder holding a copy of the
repository's `nbgrader_config.py` and of the lab's source notebooks, so nothing (no
`gradebook.db`, no `submitted/`) is left in the repository, and the real `nbgrader`
command line is what runs, exactly as an instructor would run it.

    python -m grader.nbtools release          # regenerate labs/ (what `make labs` runs)
    python -m grader.nbtools stale            # exit 1 and name the labs whose release is stale
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grader.lifecycle import descendants

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "nbgrader_config.py"
# Notebook metadata that changes from one run to the next and carries no content.
VOLATILE_NB_KEYS = ("language_info", "widgets")
VOLATILE_CELL_KEYS = ("execution", "collapsed", "scrolled", "jupyter")


class NbgraderError(RuntimeError):
    """An nbgrader command failed; the message carries its output."""


def lab_ids(source_root: Path = REPO) -> list[str]:
    """Lab folders under `solutions/` (each one an nbgrader assignment)."""
    src = source_root / "solutions"
    if not src.is_dir():
        return []
    return sorted(p.name for p in src.iterdir() if p.is_dir() and p.name[:2].isdigit())


def nbgrader(args: list[str], cwd: Path, timeout: float | None = None) -> str:
    """Run the real `nbgrader` command line in course folder `cwd`; return its log."""
    argv = [sys.executable, "-m", "nbgrader", *args]
    code, log = run_bounded(argv, cwd, timeout)
    if code is None:
        raise NbgraderError(f"nbgrader {' '.join(args)}: no result after {timeout} s, killed")
    if code != 0 or "[ERROR]" in log:
        raise NbgraderError(f"nbgrader {' '.join(args)} failed:\n{log}")
    return log


def run_bounded(argv: list[str], cwd: Path, timeout: float | None) -> tuple[int | None, str]:
    """Run `argv`; past `timeout`, kill it *and* the kernels it started (exit code None).

    Jupyter starts each kernel in a session of its own, so killing nbgrader's process group
    leaves the kernel (and the lab namespaces it holds) behind; kernels are found as
    nbgrader's children before it is killed.
    """
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=tool_env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            code: int | None = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            _kill_tree(proc.pid)
            proc.wait()
            code = None
        out.seek(0)
        return code, out.read()


def _kill_tree(pid: int) -> None:
    victims = descendants(pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(v) for v in victims) and time.monotonic() < deadline:
        time.sleep(0.05)


def process_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (killed, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def tool_env() -> dict[str, str]:
    """The environment with this interpreter's `bin/` first on PATH.

    nbgrader runs `alembic` (its database migrations) by name, so a venv whose `bin/` is not
    on PATH fails with "No such file or directory: 'alembic'".
    """
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


@contextmanager
def scratch_course(lab: str, source_root: Path = REPO) -> Iterator[Path]:
    """A temporary course folder with the config and `solutions/<lab>`, assignment generated."""
    with tempfile.TemporaryDirectory(prefix="k8snet-course-") as tmp:
        course = Path(tmp)
        shutil.copy(CONFIG, course / "nbgrader_config.py")
        shutil.copytree(source_root / "solutions" / lab, course / "solutions" / lab)
        nbgrader(["generate_assignment", lab, "--force"], cwd=course)
        yield course


# --- release -------------------------------------------------------------------------------
def release(lab: str, source_root: Path = REPO, dest_root: Path = REPO) -> Path:
    """Regenerate `labs/<lab>/` from `solutions/<lab>/` with `nbgrader generate_assignment`."""
    with scratch_course(lab, source_root) as course:
        dest = dest_root / "labs" / lab
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(course / "labs" / lab, dest)
    return dest


def normalized(path: Path) -> dict[str, Any]:
    """A notebook's JSON without volatile metadata, for comparing two releases."""
    nb: dict[str, Any] = json.loads(path.read_text())
    for key in VOLATILE_NB_KEYS:
        nb.get("metadata", {}).pop(key, None)
    for cell in nb.get("cells", []):
        for key in VOLATILE_CELL_KEYS:
            cell.get("metadata", {}).pop(key, None)
        if isinstance(cell.get("source"), list):
            cell["source"] = "".join(cell["source"])
    return nb


def release_differences(lab: str, source_root: Path = REPO) -> list[str]:
    """Files of `labs/<lab>/` that differ from a fresh release (empty: up to date)."""
    with tempfile.TemporaryDirectory(prefix="k8snet-release-") as tmp:
        fresh = release(lab, source_root, Path(tmp))
        committed = source_root / "labs" / lab
        names = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
        if committed.is_dir():
            names |= {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
        return sorted(str(n) for n in names if not _same(fresh / n, committed / n))


def _same(a: Path, b: Path) -> bool:
    if not (a.is_file() and b.is_file()):
        return False
    if a.suffix == ".ipynb":
        return normalized(a) == normalized(b)
    return a.read_bytes() == b.read_bytes()


# --- autograde -----------------------------------------------------------------------------
@dataclass
class CellGrade:
    grade_id: str
    score: float
    max_score: float


@dataclass
class GradeResult:
    """One autograded submission: scores per grade cell and the autograded notebook."""

    student: str
    cells: dict[str, CellGrade] = field(default_factory=dict)
    notebook: dict[str, Any] = field(default_factory=dict)
    feedback_html: str = ""

    @property
    def score(self) -> float:
        return sum(c.score for c in self.cells.values())

    @property
    def max_score(self) -> float:
        return sum(c.max_score for c in self.cells.values())

    def cell_text(self, grade_id: str) -> str:
        """All output text of the autograded cell `grade_id` (verdicts, errors)."""
        for cell in self.notebook.get("cells", []):
            if cell.get("metadata", {}).get("nbgrader", {}).get("grade_id") == grade_id:
                return "".join(_output_text(o) for o in cell.get("outputs", []))
        raise KeyError(f"no cell {grade_id!r} in the autograded notebook")


def _output_text(output: dict[str, Any]) -> str:
    if output.get("output_type") == "stream":
        text = output.get("text", "")
        return "".join(text) if isinstance(text, list) else str(text)
    if output.get("output_type") == "error":
        return f"{output.get('ename')}: {output.get('evalue')}\n" + "\n".join(
            output.get("traceback", [])
        )
    data = output.get("data", {}).get("text/plain", "")
    return "".join(data) if isinstance(data, list) else str(data)


def submit(course: Path, lab: str, student: str, notebook: Path) -> None:
    """Place `notebook` as `student`'s submission of `lab` in the course folder."""
    dest = course / "submitted" / student / lab
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(notebook, dest / f"{lab}.ipynb")


def autograde_submitted(
    course: Path,
    lab: str,
    student: str,
    feedback: bool = False,
    timeout: float | None = None,
    extra_args: list[str] | None = None,
) -> GradeResult:
    """`nbgrader autograde` one submission already in the course folder; read its grades."""
    args = ["autograde", lab, "--student", student, "--force", *(extra_args or [])]
    nbgrader(args, cwd=course, timeout=timeout)
    result = GradeResult(student, cells=read_grades(course, lab, student))
    graded = course / "autograded" / student / lab / f"{lab}.ipynb"
    result.notebook = json.loads(graded.read_text())
    if feedback:
        nbgrader(["generate_feedback", lab, "--student", student, "--force"], cwd=course)
        html = course / "feedback" / student / lab / f"{lab}.html"
        result.feedback_html = html.read_text()
    return result


def read_grades(course: Path, lab: str, student: str) -> dict[str, CellGrade]:
    from nbgrader.api import Gradebook

    db = f"sqlite:///{course / 'gradebook.db'}"
    with Gradebook(db) as gb:
        sub = gb.find_submission_notebook(lab, lab, student)
        return {
            g.name: CellGrade(g.name, float(g.score or 0.0), float(g.max_score)) for g in sub.grades
        }


def autograde(
    lab: str, notebook: Path, source_root: Path = REPO, feedback: bool = False
) -> GradeResult:
    """Autograde one notebook as a submission of `lab`, in a scratch course folder."""
    with scratch_course(lab, source_root) as course:
        submit(course, lab, "student", notebook)
        return autograde_submitted(course, lab, "student", feedback=feedback)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["release"]:
        for lab in args[1:] or lab_ids():
            print(f"released {release(lab).relative_to(REPO)}")
        return 0
    if args[:1] == ["stale"]:
        stale = {lab: release_differences(lab) for lab in args[1:] or lab_ids()}
        for lab, files in stale.items():
            if files:
                print(f"{lab}: stale release files: {', '.join(files)} (run `make labs`)")
        return 1 if any(stale.values()) else 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main())
