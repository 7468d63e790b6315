"""The notebook executor used for grading: nbgrader's `Execute`, plus an independent verdict.

Student code shares the Jupyter kernel with the check cells, so a submission can replace
`grader.nb.check`, patch Scapy to invent replies, return an object equal to anything, or
silence tracebacks (`set_custom_exc`, `sys.excepthook`). None of that may earn points. So,
right after each autograded cell runs, and while the kernel (and with it the learner's
namespaces) is still alive, this executor runs the cell's check again from the grading
process, in an isolated verifier process started before the kernel (`grader.verify`),
and replaces the cell's outputs
with that verdict: the verdict text, plus an error output when it failed, which nbgrader
scores as 0. Whatever the kernel printed for that cell is discarded.

Predict-then-observe answers are read from the notebook *source*, never from the kernel: the
learner assigns a plain literal (`q1 = "b"`) and `ast.literal_eval` reads it here.

Also guarded: files on disk. The verifier process imports the grader, the lab's checks and
the probes' forkserver (with Scapy) before the kernel exists, so later rewrites of those
files do not reach it; the libraries that are still imported lazily (Scapy, pyroute2,
nbgrader) are snapshotted (size, mtime) at start and every later verdict fails if they
changed.

Threat model left open, on purpose: the kernel runs as root (it must, to build namespaces),
so a determined student can attack the grading machine itself. Grade untrusted submissions
in a throwaway container (`docker compose run`), as with any nbgrader course.
"""

from __future__ import annotations

import ast
import time
from pathlib import Path
from typing import Any

from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Unicode

from grader.labs import Check, Lab, load_lab
from grader.verdict import Verdict
from grader.verify import VerifierServer

# The grader's own code (grader/, course/) is loaded into the verifier process before the
# kernel starts, so rewriting those files later changes nothing; these libraries are still
# imported lazily by probe processes and by nbgrader while it grades.
GUARDED_PACKAGES = ("scapy", "pyroute2", "nbgrader")


def literal_answers(cells: list[NotebookNode], names: tuple[str, ...]) -> dict[str, object]:
    """Top-level `name = <literal>` assignments in code cells; the last one wins.

    Anything that is not a literal (a call, a class instance) is ignored, so an object whose
    `__eq__` always says True never reaches the check.
    """
    found: dict[str, object] = {}
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        for node in tree.body:
            target, value = _assignment(node)
            if target in names and value is not None:
                try:
                    found[target] = ast.literal_eval(value)
                except (ValueError, SyntaxError, TypeError):
                    found.pop(target, None)
    return found


def _assignment(node: ast.stmt) -> tuple[str | None, ast.expr | None]:
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
        if isinstance(target, ast.Name):
            return target.id, node.value
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return node.target.id, node.value
    return None, None


def snapshot_files(packages: tuple[str, ...] = GUARDED_PACKAGES) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file of the guarded packages, found without importing them."""
    import importlib.util

    snap: dict[str, tuple[int, int]] = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        folders = (spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            for path in Path(folder).rglob("*.py"):
                st = path.stat()
                snap[str(path)] = (st.st_size, st.st_mtime_ns)
    return snap


def verdict_outputs(verdict: Verdict) -> list[NotebookNode]:
    """The outputs a check cell gets: the verdict text, and an error when it failed."""
    outputs = [NotebookNode(output_type="stream", name="stdout", text=verdict.render() + "\n")]
    if not verdict.passed:
        outputs.append(
            NotebookNode(
                output_type="error",
                ename="CheckFailed",
                evalue=verdict.summary,
                traceback=[f"CheckFailed: {verdict.summary}"],
            )
        )
    return outputs


class VerifyingExecute(Execute):
    """nbgrader's executor; each check cell's grade comes from an independent verifier run."""

    lab_id = Unicode("", help="lab id; defaults to the nbgrader assignment id").tag(config=True)
    verify_timeout = Float(45.0, help="seconds one verifier run may take").tag(config=True)

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> Any:
        lab_id = self.lab_id or resources.get("nbgrader", {}).get("assignment", "")
        self._lab: Lab = load_lab(lab_id)
        self._snapshot = snapshot_files()
        self.verdicts: dict[str, Verdict] = {}
        self._server = VerifierServer(lab_id)
        self._server.start()  # before the kernel exists: nothing in it can touch the server
        try:
            return super().preprocess(nb, resources, km)
        finally:
            self._server.close()

    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        cell, resources = super().preprocess_cell(cell, resources, index)
        meta = cell.metadata.get("nbgrader", {})
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            verdict = self._judge(meta.get("grade_id", ""), index)
            cell.outputs = verdict_outputs(verdict)
        return cell, resources

    def _judge(self, grade_id: str, index: int) -> Verdict:
        chk = self._lab.by_grade_id(grade_id)
        if chk is None:
            verdict = _unknown_cell(self._lab.id, grade_id)
        elif snapshot_files() != self._snapshot:
            verdict = _tampered(chk)
        else:
            answers = literal_answers(self.nb.cells[: index + 1], chk.answers)
            pid = self._kernel_pid()
            t0 = time.perf_counter()
            verdict = self._server.ask(self._lab.id, chk.id, pid, answers, self.verify_timeout)
            self.log.info("check %s judged in %.2f s", chk.id, time.perf_counter() - t0)
        self.verdicts[grade_id] = verdict
        return verdict

    def _kernel_pid(self) -> int:
        """The kernel's process id: the owner recorded in the learner's run record."""
        assert self.km is not None
        pid = getattr(self.km.provisioner, "pid", None)
        return int(pid) if pid else -1  # unknown: no run will match, the check says so


def _unknown_cell(lab_id: str, grade_id: str) -> Verdict:
    return Verdict.fail(
        f"no check is registered for grade cell {grade_id!r}",
        sent=f"looked up {grade_id!r} in the check table of lab {lab_id}",
        observed="no entry",
        expected="every autograded cell listed in grader/labs",
        hint="course maintainers: add the cell to the lab's check table",
    )


def _tampered(chk: Check) -> Verdict:
    return Verdict.fail(
        f"{chk.title}: grader files changed while grading",
        sent="compared the grader's and its libraries' files with their state at start",
        observed=f"a file of {', '.join(GUARDED_PACKAGES)} changed on disk",
        expected="no file of the grading code touched by the notebook",
        hint="a notebook must not modify the course or library code",
    )
