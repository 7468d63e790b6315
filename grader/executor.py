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

Also guarded: the verifier itself. It runs from a read-only, sha256-hashed copy of the
grader, the course code and their libraries, made before the first kernel starts
(`grader.integrity`), with `python -I -S` and a fixed PATH; every verdict is accepted only
if those hashes (and the tools' and the interpreter's) still match. A verifier that dies,
stalls or finds a changed file is never restarted: the remaining checks fail with "grading
was interfered with", and the submission is flagged (`report`, read by `k8snet grade`).

Plain `nbgrader autograde` (no `--VerifyingExecute.sandbox=...`) sandboxes whenever a
sandbox can run here (root and bubblewrap): an instructor who never heard of the option is
protected too; where it cannot, one warning line says so and why, and grading goes on
unsandboxed. `k8snet check` passes False (self-study), `k8snet grade` its --sandbox choice.

With `sandbox=True` (what `k8snet grade` uses) the kernel runs in a bubblewrap sandbox of
its own (`grader.sandbox`): its own user, mount, PID and network namespaces and `/run`,
the notebook and the course code only. The verifier then inspects the namespaces under that sandbox's
`/run/netns`, whoever the run registry says owns them.

Failures stay graceful: a kernel that dies keeps the points of the checks judged before
(the feedback names the cell where it died); a cell past its time limit says "cell N ran
past S s and was stopped", also when it ignores the interrupt (the kernel is then stopped
and later checks say so); processes a sandboxed submission detached are noted.

Exercise cells that use the lab's own reference implementation of the topic (declared per
lab: `Lab.reference`) score zero for that exercise, found statically (`reference_calls`).

The learner's identity reaches the kernel as env `K8SNET_LEARNER` (nbgrader's student id;
unset for a self-check), so per-learner faults are drawn the same way when grading.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import zmq
from nbclient.exceptions import CellTimeoutError, DeadKernelError
from nbformat import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Bool, Float, Unicode

from grader.labs import Check, Lab, load_lab
from grader.verdict import Verdict
from grader.verify import INTERFERED, VerifierServer

# The verifier runs from its own hashed copy (grader.integrity); nbgrader still runs in the
# grading process itself and imports parts of itself lazily while it grades.
GUARDED_PACKAGES = ("nbgrader",)


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


def reference_calls(cells: list[NotebookNode], lab: Lab) -> dict[str, list[str]]:
    """Check grade_id -> uses of the lab's reference implementation in its exercise cells.

    Names are resolved through the notebook's imports (`from course.podnet import bridge`
    makes `bridge.add_pod` mean `course.podnet.bridge.add_pod`). An exercise `exN-...`
    cell counts against the checks `check-exN...`, or, for an exercise whose functions are
    checked later (no check of its own), against the next exercise that has checks.

    Hidden uses count too (`_hidden_uses`): a reference name spelled in a string (for
    `importlib.import_module`, `__import__`, `sys.modules[...]`, even built by `+`, an
    f-string or `".".join`), `getattr(module, "name")`, names bound to the reference in any
    cell (`b = course.podnet.bridge`), and code the check cannot read at all in an exercise
    cell (`exec`, `eval`, an import or `getattr` by a computed name). Still static: what
    it cannot see, the checks judge from the kernel's real state.
    """
    if not lab.reference:
        return {}
    trees = [(c, _parse(c.source)) for c in cells if c.get("cell_type") == "code"]
    aliases: dict[str, str] = {}
    for _, tree in trees:
        aliases.update(_import_aliases(tree))
    for _ in range(2):  # an alias of an alias
        for _, tree in trees:
            aliases.update(_assigned_aliases(tree, aliases))
    found: dict[str, list[str]] = {}
    for cell, tree in trees:
        meta = cell.metadata.get("nbgrader", {})
        exercise = re.match(r"ex(\d+)", meta.get("grade_id", "")) if meta.get("solution") else None
        if exercise is None or tree is None:
            continue
        uses = [u for u in _dotted_uses(tree, aliases) if _is_reference(u, lab)]
        uses += _hidden_uses(tree, aliases, lab)
        for grade_id in _checks_of_exercise(lab, int(exercise.group(1))) if uses else []:
            found.setdefault(grade_id, [])
            found[grade_id] += [u for u in dict.fromkeys(uses) if u not in found[grade_id]]
    return found


def _parse(source: str) -> ast.Module | None:
    try:
        return ast.parse(source)
    except SyntaxError:
        return None


def _import_aliases(tree: ast.Module | None) -> dict[str, str]:
    names: dict[str, str] = {}
    for node in ast.walk(tree) if tree else []:
        if isinstance(node, ast.Import):
            for a in node.names:
                names[a.asname or a.name.split(".")[0]] = (
                    a.name if a.asname else a.name.split(".")[0]
                )
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                names[a.asname or a.name] = f"{node.module}.{a.name}"
    return names


# Calls whose effect the static check cannot read when their argument is computed.
DYNAMIC_IMPORTS = ("__import__", "importlib.import_module", "importlib.__import__")
DYNAMIC_CODE = ("exec", "eval", "compile", "runpy.run_path", "runpy.run_module")
_DOTTED = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")


def _folded(node: ast.AST) -> str | None:
    """The string `node` always evaluates to, if it is built from literals only."""
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, str) else None
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _folded(node.left), _folded(node.right)
        return left + right if left is not None and right is not None else None
    if isinstance(node, ast.JoinedStr):
        parts = [_folded(v) for v in node.values]
        return "".join(p for p in parts if p is not None) if None not in parts else None
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "join"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.List | ast.Tuple)
    ):
        sep = _folded(node.func.value)
        parts = [_folded(e) for e in node.args[0].elts]
        if sep is not None and None not in parts:
            return sep.join(p for p in parts if p is not None)
    return None


def _resolved(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """The dotted name an expression stands for: `b.add_pod`, `getattr(m, "x")`,
    `importlib.import_module("course.podnet")`, resolved through `aliases`."""
    if isinstance(node, ast.Name):
        return aliases.get(node.id, node.id)
    if isinstance(node, ast.Attribute):
        base = _resolved(node.value, aliases)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Call) and node.args:
        func = _resolved(node.func, aliases)
        if func == "getattr" and len(node.args) >= 2:
            base, attr = _resolved(node.args[0], aliases), _folded(node.args[1])
            return f"{base}.{attr}" if base and attr else None
        if func in DYNAMIC_IMPORTS:
            return _folded(node.args[0])
    return None


def _assigned_aliases(tree: ast.Module | None, aliases: dict[str, str]) -> dict[str, str]:
    """`name = <something under course>` in any cell makes `name` mean that."""
    names: dict[str, str] = {}
    for node in ast.walk(tree) if tree else []:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            value = _resolved(node.value, aliases)
            if isinstance(target, ast.Name) and value and value.startswith("course."):
                names[target.id] = value
    return names


def _hidden_uses(tree: ast.Module, aliases: dict[str, str], lab: Lab) -> list[str]:
    """Reference uses `_dotted_uses` cannot see, and code the static check cannot read."""
    found: list[str] = []
    for node in ast.walk(tree):
        text = _folded(node) if isinstance(node, ast.expr) else None
        if text is not None:
            name = text.strip().removesuffix(".py").replace("/", ".").strip(".")
            if _DOTTED.fullmatch(name) and _is_reference(name, lab):
                found.append(f"{name} (named in a string)")
        if isinstance(node, ast.Call):
            func = _resolved(node.func, aliases) or ""
            target = _resolved(node, aliases)
            if target and _is_reference(target, lab):
                found.append(target)
            computed = bool(node.args) and _folded(node.args[0]) is None
            if func in DYNAMIC_CODE:
                found.append(f"{func}() (code the static check cannot read)")
            elif func in DYNAMIC_IMPORTS and computed:
                found.append(f"{func}() of a computed name (an import it cannot read)")
            elif func == "getattr" and len(node.args) >= 2 and _folded(node.args[1]) is None:
                base = _resolved(node.args[0], aliases) or ""
                if base == "course" or base.startswith("course."):
                    found.append(f"getattr({base}, ...) of a computed name")
        if isinstance(node, ast.Subscript) and _resolved(node.value, aliases) == "sys.modules":
            key = _folded(node.slice)
            if key is None:
                found.append("sys.modules[...] of a computed name")
    return list(dict.fromkeys(found))


def _dotted_uses(tree: ast.Module, aliases: dict[str, str]) -> list[str]:
    """Every outermost `a.b.c` (or bare name) in `tree`, resolved through `aliases`."""
    inner = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and not node.level:
            uses += [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            uses += [a.name for a in node.names]
        elif isinstance(node, ast.Name | ast.Attribute) and id(node) not in inner:
            parts: list[str] = []
            cur: ast.expr = node
            while isinstance(cur, ast.Attribute):
                parts.insert(0, cur.attr)
                cur = cur.value
            if isinstance(cur, ast.Name) and cur.id in aliases:
                uses.append(".".join([aliases[cur.id], *parts]))
    return uses


def _is_reference(dotted: str, lab: Lab) -> bool:
    def under(name: str, roots: tuple[str, ...]) -> bool:
        return any(name == r or name.startswith(r + ".") for r in roots)

    return under(dotted, lab.reference) and not under(dotted, lab.reference_allowed)


def _checks_of_exercise(lab: Lab, number: int) -> list[str]:
    numbers = sorted(
        {int(m.group(1)) for c in lab.checks if (m := re.match(r"check-ex(\d+)", c.grade_id))}
    )
    later = [n for n in numbers if n >= number]
    if not later:
        return []
    return [c.grade_id for c in lab.checks if re.match(rf"check-ex{later[0]}\b", c.grade_id)]


def snapshot_files(packages: tuple[str, ...] = GUARDED_PACKAGES) -> dict[str, str]:
    """sha256 of every module of the guarded packages, found without importing them.

    Content, not (size, mtime): both can be put back after an edit.
    """
    import importlib.util

    snap: dict[str, str] = {}
    for name in packages:
        spec = importlib.util.find_spec(name)
        folders = (spec.submodule_search_locations or []) if spec else []
        for folder in folders:
            for path in Path(folder).rglob("*.py"):
                snap[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
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


@contextlib.contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables (inherited by the kernel) for the body, then restore them."""
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in before.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class VerifyingExecute(Execute):
    """nbgrader's executor; each check cell's grade comes from an independent verifier run."""

    lab_id = Unicode("", help="lab id; defaults to the nbgrader assignment id").tag(config=True)
    verify_timeout = Float(45.0, help="seconds one verifier run may take").tag(config=True)
    sandbox = Bool(
        None,
        allow_none=True,
        help="run the kernel in a bubblewrap sandbox (unset: whenever one can run here)",
    ).tag(config=True)
    sandbox_checked = Bool(False, help="the caller already probed the sandbox").tag(config=True)
    verifier_copy = Unicode("", help="verifier copy made by the grading parent").tag(config=True)
    verifier_digest = Unicode("", help="sha256 of that copy's manifest").tag(config=True)
    report = Unicode("", help="JSON file receiving flags and notes for k8snet grade").tag(
        config=True
    )
    learner = Unicode("", help="K8SNET_LEARNER for the kernel (default: nbgrader student)").tag(
        config=True
    )

    def preprocess(self, nb: NotebookNode, resources: Any = None, km: Any = None) -> Any:
        # Imported now, before any kernel runs: the unsandboxed path used to import it only
        # after cells had run, and a root kernel could have rewritten it by then.
        import grader.sandbox  # noqa: F401
        from grader.integrity import Integrity

        resources = resources if resources is not None else {}
        lab_id = self.lab_id or resources.get("nbgrader", {}).get("assignment", "")
        self.verdicts: dict[str, Verdict] = {}
        self.interference: list[str] = []
        self.notes: list[str] = []
        self.stopped: str = ""  # why no more cells run (the kernel died or was stopped)
        self._detached: list[str] = []
        integrity = None
        if self.verifier_copy:
            integrity = Integrity.load(Path(self.verifier_copy), self.verifier_digest)
        self._server = VerifierServer(lab_id, integrity)
        # Before the kernel exists, so nothing in it can touch the server or the lab's checks
        # this process imports: both happen at once (the copy is mostly file writes and
        # hashing, the import Python), and the verifier's own start-up (the checks, the
        # probes' forkserver) then runs while this process goes on, not after it.
        with ThreadPoolExecutor(max_workers=1) as pool:
            loading = pool.submit(load_lab, lab_id)
            self._server.start()
        try:
            self._lab: Lab = loading.result()
            self._snapshot = snapshot_files()
            self.reference_calls = reference_calls(nb.cells, self._lab)
            learner = self.learner or resources.get("nbgrader", {}).get("student", "")
            env = {"K8SNET_LEARNER": learner} if learner else {}
            if self._sandboxed():
                self._use_sandbox(resources, env)
            with environment(**env):
                return super().preprocess(nb, resources, km)
        finally:
            self._finish()

    def create_kernel_manager(self) -> Any:
        """A kernel whose sockets its manager gives CurveZMQ keys (the kernelspec supports it).

        Without them ipykernel warns "Kernel is running over TCP without encryption" into the
        output of every `k8snet check`, which reads like a problem of the learner's.
        """
        km = super().create_kernel_manager()
        if zmq.has("curve"):
            km.transport_encryption = "auto"
        return km

    def _sandboxed(self) -> bool:
        """The caller's choice, or (unset) whether a sandbox can run here, said when not."""
        if self.sandbox is not None:
            return bool(self.sandbox)
        from grader.sandbox import unavailable_reason_once

        why = unavailable_reason_once()
        if why:
            self.log.warning(
                "k8snet: grading WITHOUT a sandbox: %s (--VerifyingExecute.sandbox=False "
                "silences this)",
                why,
            )
            return False
        self.sandbox_checked = True
        return True

    def _use_sandbox(self, resources: dict[str, Any], env: dict[str, str]) -> None:
        from grader.sandbox import SandboxKernelManager, unavailable_reason

        why = "" if self.sandbox_checked else unavailable_reason()
        if why:
            raise RuntimeError(f"cannot grade in a sandbox: {why}")
        self.kernel_manager_class = SandboxKernelManager
        self.config.SandboxKernelManager.submission_dir = resources.get("metadata", {}).get(
            "path", ""
        )
        self.config.SandboxKernelManager.extra_env = [f"{k}={v}" for k, v in env.items()]

    def _finish(self) -> None:
        left = self._detached  # (nbclient has dropped self.km by now)
        if left:
            self.notes.append(
                f"{len(left)} process(es) detached from the kernel were still running at "
                f"the end and were stopped with the sandbox: {'; '.join(left[:3])}"
            )
        if self._server.interference:
            self.interference.append(self._server.interference)
        self._server.close()
        if self.report:
            data = {"interference": self.interference, "notes": self.notes}
            data["stopped"] = self.stopped
            Path(self.report).write_text(json.dumps(data, indent=1))

    # --- cells ---------------------------------------------------------------------------------
    def preprocess_cell(self, cell: NotebookNode, resources: Any, index: int) -> Any:
        meta = cell.metadata.get("nbgrader", {})
        if self.stopped:
            if cell.cell_type == "code" and cell.source.strip():
                cell.outputs = [_error("NotRun", f"not run: {self.stopped}")]
        else:
            cell = self._execute(cell, resources, index)
            self._note_detached()
        if cell.cell_type == "code" and meta.get("grade") and not meta.get("solution"):
            verdict = self._judge(meta.get("grade_id", ""), index)
            cell.outputs = verdict_outputs(verdict)
        return cell, self.resources

    def _execute(self, cell: NotebookNode, resources: Any, index: int) -> NotebookNode:
        limit = self._get_timeout(cell)
        stopped = f"cell {index + 1} ran past {limit} s and was stopped"
        self.error_on_timeout = {
            "ename": "CellTimeoutError",
            "evalue": stopped,
            "traceback": [f"CellTimeoutError: {stopped}"],
        }
        try:
            cell, _ = super().preprocess_cell(cell, resources, index)
        except DeadKernelError:
            self.stopped = f"the kernel died while running cell {index + 1}"
            cell.outputs = [_error("DeadKernelError", self.stopped)]
        except CellTimeoutError:  # interrupted at the limit, but the cell ignored the interrupt
            self._kill_kernel()
            self.stopped = f"{stopped} (it ignored the interrupt, so the kernel was stopped)"
            cell.outputs = [_error("CellTimeoutError", self.stopped)]
        return cell

    def _note_detached(self) -> None:
        """Processes the submission detached so far (seen after each cell: at the end the
        sandbox is already gone, and they with it)."""
        from grader.sandbox import SandboxKernelManager

        if isinstance(self.km, SandboxKernelManager):
            self._detached = self.km.detached_processes() or self._detached

    def _kill_kernel(self) -> None:
        from grader.sandbox import SandboxKernelManager

        if isinstance(self.km, SandboxKernelManager):
            self.km.kill_sandbox()
            return
        pid = getattr(getattr(self.km, "provisioner", None), "pid", None)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(os.getpgid(int(pid)), signal.SIGKILL)

    def _judge(self, grade_id: str, index: int) -> Verdict:
        chk = self._lab.by_grade_id(grade_id)
        if chk is None:
            verdict = _unknown_cell(self._lab.id, grade_id)
        elif snapshot_files() != self._snapshot:
            verdict = _tampered(chk)
            self.interference.append(f"{', '.join(GUARDED_PACKAGES)} changed on disk")
        elif self.stopped:
            verdict = _not_judged(chk, self.stopped)
        elif chk.grade_id in self.reference_calls:
            verdict = _reference_called(chk, self.reference_calls[chk.grade_id])
        else:
            answers = literal_answers(self.nb.cells[: index + 1], chk.answers)
            pid, root = self._kernel_identity()
            t0 = time.perf_counter()
            verdict = self._server.ask(
                self._lab.id, chk.id, pid, answers, self.verify_timeout, root=root
            )
            self.log.info("check %s judged in %.2f s", chk.id, time.perf_counter() - t0)
        self.verdicts[grade_id] = verdict
        return verdict

    def _kernel_identity(self) -> tuple[int, str]:
        """(pid, root): the kernel's pid and "" outside a sandbox; (0, sandbox root) inside.

        In a sandbox every run is the submission's own, so no pid is needed to pick it.
        """
        from grader.sandbox import SandboxKernelManager

        assert self.km is not None
        if isinstance(self.km, SandboxKernelManager):
            return 0, self.km.root()
        pid = getattr(self.km.provisioner, "pid", None)
        return (int(pid) if pid else -1), ""  # unknown: no run will match, the check says so


def _error(ename: str, text: str) -> NotebookNode:
    return NotebookNode(
        output_type="error", ename=ename, evalue=text, traceback=[f"{ename}: {text}"]
    )


def _not_judged(chk: Check, why: str) -> Verdict:
    return Verdict.fail(
        f"{chk.title}: not judged, {why}",
        sent="nothing: the notebook stopped before this check",
        observed=why,
        expected="every cell above this check to finish",
        hint="the checks before that cell kept their points; fix that cell and grade again",
    )


def _reference_called(chk: Check, calls: list[str]) -> Verdict:
    return Verdict.fail(
        f"{chk.title}: the exercise calls the course's reference implementation",
        sent="read the exercise cells of the submission (a static check, nothing executed)",
        observed=f"call(s) to {', '.join(calls)}",
        expected="the exercise done with your own code (the reference is for reading)",
        hint="write the steps yourself with the kernel helpers; zero points for this exercise",
    )


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
        f"{chk.title}: {INTERFERED} (grader files changed while grading)",
        sent="compared the grader's and its libraries' files with their state at start",
        observed=f"a file of {', '.join(GUARDED_PACKAGES)} changed on disk",
        expected="no file of the grading code touched by the notebook",
        hint="a notebook must not modify the course or library code",
    )
