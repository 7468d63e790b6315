"""Take the predict-then-observe answer keys out of grader/labs, for the `class` image.

Usage: python3 docker/withhold_answers.py grader/labs    (rewrites lab*.py in place)

Why: a course that hands its students the Docker image must not hand them the answers with
it. What a class image still needs is the exercise checks: they judge what the learner built
(namespaces, links, rules, real packets), so knowing what they look at does not do the work
for anyone, and students keep self-checking (`k8snet check`, the notebook's check cells).
A question's check is different: its key *is* the answer.

A question check is a Check whose `answers` names the notebook variables it reads (found in
the imported lab's `LAB.checks`), and any top-level `Qn = question(...)`. The module-level
definition of its function (a `def` or a `Q1 = question(...)`) is replaced by `Q1 = _withheld(title, answers)`, which says "not judged
in this image" (0 points in a self-check; the instructor's grading, with the full grader,
judges it). Then whatever only those definitions used goes too: the `Q1_RIGHT = "b"`
constants, a wrapper like lab 02's `_question`. Edits are made on the source text, so every
other line keeps its formatting and comments. Run it from the project root (it imports the
labs as `grader.labs.labNN`).
"""

from __future__ import annotations

import ast
import importlib
import re
import sys
from pathlib import Path
from types import ModuleType

HELPER = '''

def _withheld(title: str, answers: tuple[str, ...]):  # type: ignore[no-untyped-def]
    """This class image carries no answer keys: the instructor's grading judges this one."""

    def judge(ctx):  # type: ignore[no-untyped-def]
        from grader.verdict import Verdict

        return Verdict.fail(
            f"{title}: not judged in this image",
            sent=f"read your answer {', '.join(answers)} from the notebook",
            observed="this class image carries no answer keys (left out on purpose)",
            expected="your instructor's grading judges this question",
            hint="keep your answer, and compare it with what the observe cells show",
        )

    return judge
'''


def question_bindings(module: ModuleType) -> dict[str, tuple[str, tuple[str, ...]]]:
    """Module-level name -> (title, answers) of every check with non-empty `answers`.

    Found at run time from the lab's own `LAB.checks`, so a lab may build its Check objects
    any way it likes (lab 06 has a helper). A check whose function has no module-level name
    is one a factory made (lab 05's predictions are judged against course.netfilter's
    model, which students read anyway): no literal key to take out, so it stays, and the
    script says so.
    """
    found = {}
    for chk in module.LAB.checks:
        if not chk.answers:
            continue
        names = [name for name, value in vars(module).items() if value is chk.run]
        if not names:
            print(f"{module.__name__}: {chk.id} is judged by a function a factory made; kept")
        for name in names:
            found[name] = (chk.title, tuple(chk.answers))
    return found


def _defined_name(stmt: ast.stmt) -> str | None:
    """The one name a top-level def/class/`NAME = ...` binds, else None."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return stmt.name
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        target = stmt.targets[0]
        return target.id if isinstance(target, ast.Name) else None
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name):
        return stmt.target.id
    return None


def _loaded_names(nodes: list[ast.stmt]) -> set[str]:
    """Names read anywhere in `nodes`."""
    return {
        n.id
        for stmt in nodes
        for n in ast.walk(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }


def _first_line(stmt: ast.stmt) -> int:
    decorators = getattr(stmt, "decorator_list", [])
    return min([stmt.lineno, *(d.lineno for d in decorators)])


def withhold(source: str, module: ModuleType) -> tuple[str, list[str]]:
    """The module source without its answer keys, and the names it removed or replaced."""
    bindings = question_bindings(module)
    tree = ast.parse(source)
    # A `Qn = question("qn", ...)` not (yet) in LAB.checks holds a key all the same.
    for stmt in tree.body:
        name, value = _defined_name(stmt), getattr(stmt, "value", None)
        called = getattr(value, "func", None) if isinstance(value, ast.Call) else None
        if name and name not in bindings and getattr(called, "id", "").endswith("question"):
            first = value.args[0] if value.args else None  # type: ignore[union-attr]
            label = first.value if isinstance(first, ast.Constant) else name
            bindings[name] = (f"question {label}", (str(label),))
    if not bindings:
        return source, []
    lines = source.splitlines(keepends=True)
    offsets = [0]
    for line in lines:
        offsets.append(offsets[-1] + len(line))

    def whole(stmt: ast.stmt) -> tuple[int, int]:
        return offsets[_first_line(stmt) - 1], offsets[stmt.end_lineno]  # type: ignore[index]

    edits: list[tuple[int, int, str]] = []
    gone: list[ast.stmt] = []
    for stmt in tree.body:
        name = _defined_name(stmt)
        if name in bindings:
            title, answers = bindings[name]
            edits.append((*whole(stmt), f"{name} = _withheld({title!r}, {answers!r})\n"))
            gone.append(stmt)
    missing = set(bindings) - {_defined_name(s) for s in gone}
    if missing:
        raise SystemExit(f"{module.__name__}: no top-level definition of {sorted(missing)}")

    # Then whatever only those definitions used (Q1_RIGHT, a wrapper), until nothing is left.
    while True:
        kept = [s for s in tree.body if s not in gone]
        live = _loaded_names(kept)
        dead = _loaded_names(gone) - live
        newly = [s for s in kept if _defined_name(s) in dead]
        if not newly:
            break
        for stmt in newly:
            edits.append((*whole(stmt), ""))
        gone += newly

    # The helper goes right after the imports at the top.
    last_import = max(
        (s for s in tree.body if isinstance(s, ast.Import | ast.ImportFrom)),
        key=lambda s: s.end_lineno or 0,
    )
    at = offsets[last_import.end_lineno]  # type: ignore[index]
    edits.append((at, at, HELPER))

    out = source
    for start, end, text in sorted(edits, key=lambda e: (e[0], e[1]), reverse=True):
        out = out[:start] + text + out[end:]
    ast.parse(out)  # still Python
    return out, sorted(filter(None, (_defined_name(s) for s in gone)))


def main(folder: str) -> int:
    for path in sorted(Path(folder).glob("lab*.py")):
        if not re.fullmatch(r"lab\d+", path.stem):
            continue  # a lab's helper module (lab01_breakfix: the fault catalogue), no LAB
        module = importlib.import_module(f"grader.labs.{path.stem}")
        text, removed = withhold(path.read_text(), module)
        path.write_text(text)
        print(f"{path}: answer keys withheld ({', '.join(removed) or 'no question checks'})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
