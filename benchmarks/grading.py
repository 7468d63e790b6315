"""What grading costs: the independent checks per lab, and a class batch in sandboxes.

In one run, on this machine:

(b) per lab (every lab in solutions/): `nbgrader autograde` of the solution as the course
    grades it (VerifyingExecute: verifier from its hashed copy, every check re-run outside
    the kernel with real packets) against the same notebook with every check cell emptied
    under nbgrader's stock executor (same cells, same namespaces, nothing checked).
    Issue 9's target: the checks add less than 50%.
(a) a class of 12 lab-01 submissions (4 full, 4 about half, 4 zero) graded by
    `grade_submissions` (what `k8snet grade` runs) three ways: --jobs 1 without a sandbox,
    --jobs 1 and --jobs 2 with one sandbox per submission. Printed: each wall time, the
    jobs-2 speed-up (target >= 1.5x) and the sandbox's own cost per submission (target < 1 s).

Usage: python benchmarks/grading.py [--skip-labs] [--skip-class] [--class-size 12]
SIGINT/SIGTERM stop it cleanly: graders, kernels and sandboxes are killed, namespaces swept.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _namespaces import bench_prefix, clean_up_on_exit  # noqa: E402

from grader import nbtools  # noqa: E402

LAB = "01-netns-veth"
TARGET_OVERHEAD = 0.50
TARGET_SPEEDUP = 1.5
TARGET_SANDBOX_S = 1.0
STOCK_EXECUTOR = (
    "--Autograde.autograde_preprocessors=['nbgrader.preprocessors.Execute',"
    "'nbgrader.preprocessors.IgnorePattern',"
    "'nbconvert.preprocessors.ClearMetadataPreprocessor',"
    "'nbgrader.preprocessors.LimitOutput','nbgrader.preprocessors.SaveAutoGrades',"
    "'nbgrader.preprocessors.AssignLatePenalties','nbgrader.preprocessors.CheckCellMetadata']"
)
NO_SANDBOX = "--VerifyingExecute.sandbox=False"
# About half of lab 01's 9 points: exercises 3 and 4 left undone, question 2 wrong.
HALF = {"ex3-solution": "pass", "ex4-solution": "pass", "answer-q2": 'q2 = "a"'}


# --- (b) checks vs no checks, per lab --------------------------------------------------------
def unchecked_source(tmp: Path, lab: str) -> Path:
    """A source tree whose lab notebook has the same cells, check cells emptied."""
    src = tmp / "solutions" / lab
    shutil.copytree(ROOT / "solutions" / lab, src)
    path = src / f"{lab}.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell["source"] = "pass"
    path.write_text(json.dumps(nb))
    return tmp


def time_autograde(course: Path, lab: str, notebook: Path, student: str, extra: list[str]) -> float:
    nbtools.submit(course, lab, student, notebook)
    t0 = time.perf_counter()
    result = nbtools.autograde_submitted(course, lab, student, extra_args=extra)
    elapsed = time.perf_counter() - t0
    if result.score != result.max_score:
        raise SystemExit(f"{lab}/{student}: expected full marks, got {result.score}")
    return elapsed


def per_lab() -> None:
    print("(b) nbgrader autograde of each lab's solution, checks vs no checks (one run each):")
    for lab in nbtools.lab_ids():
        with tempfile.TemporaryDirectory(prefix="k8snet-bench-") as tmp:
            plain_root = unchecked_source(Path(tmp), lab)
            plain_nb = plain_root / "solutions" / lab / f"{lab}.ipynb"
            checked_nb = ROOT / "solutions" / lab / f"{lab}.ipynb"
            with (
                nbtools.scratch_course(lab) as checked,
                nbtools.scratch_course(lab, plain_root) as plain,
            ):
                b = time_autograde(plain, lab, plain_nb, "base", [STOCK_EXECUTOR])
                # the checks' own cost: plain nbgrader would sandbox by default (grader.executor)
                f = time_autograde(checked, lab, checked_nb, "checked", [NO_SANDBOX])
        overhead = (f - b) / b
        verdict = "OK" if overhead < TARGET_OVERHEAD else "MISSED"
        print(
            f"  {lab:22} no checks {b:6.1f} s   checks {f:6.1f} s   ratio {f / b:.2f}x   "
            f"checks add {overhead:.0%} (target < {TARGET_OVERHEAD:.0%}): {verdict}"
        )


# --- (a) a class batch, sandboxed or not, 1 or 2 at a time -------------------------------------
def make_class(root: Path, size: int) -> Path:
    course = root / "class"
    course.mkdir()
    shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
    shutil.copytree(ROOT / "solutions" / LAB, course / "solutions" / LAB)
    solution = json.loads((ROOT / "solutions" / LAB / f"{LAB}.ipynb").read_text())
    release = json.loads((ROOT / "labs" / LAB / f"{LAB}.ipynb").read_text())
    half = json.loads(json.dumps(solution))
    for cell in half["cells"]:
        gid = cell["metadata"].get("nbgrader", {}).get("grade_id")
        if gid in HALF:
            cell["source"] = HALF[gid]
    kinds = [("full", solution), ("half", half), ("zero", release)]
    for i in range(size):
        kind, nb = kinds[i % 3]
        dest = course / "submitted" / f"s{i:02d}-{kind}" / LAB
        dest.mkdir(parents=True)
        (dest / f"{LAB}.ipynb").write_text(json.dumps(nb))
    return course


def batch(course: Path, jobs: int, sandbox: bool) -> tuple[float, list[float]]:
    from grader.grading import grade_submissions

    for folder in ("autograded", "feedback"):
        shutil.rmtree(course / folder, ignore_errors=True)
    (course / "gradebook.db").unlink(missing_ok=True)
    t0 = time.perf_counter()
    rows = grade_submissions(course, LAB, jobs=jobs, sandbox=sandbox)
    elapsed = time.perf_counter() - t0
    bad = [r for r in rows if r.status != "ok"]
    if bad:
        raise SystemExit(f"grading failed: {[(r.student, r.status) for r in bad]}")
    return elapsed, [r.score for r in rows]


def class_batch(size: int) -> None:
    print(f"(a) {size} lab-01 submissions (full/half/zero), graded by k8snet grade's batch:")
    with tempfile.TemporaryDirectory(prefix="k8snet-bench-class-") as tmp:
        course = make_class(Path(tmp), size)
        plain, plain_scores = batch(course, 1, sandbox=False)
        one, scores = batch(course, 1, sandbox=True)
        two, scores2 = batch(course, 2, sandbox=True)
    if not plain_scores == scores == scores2:
        raise SystemExit(f"scores differ: {plain_scores} / {scores} / {scores2}")
    speedup = one / two
    per_sub = (one - plain) / size
    print(f"  scores: {scores} (the same all three ways)")
    print(f"  --jobs 1, no sandbox: {plain:6.1f} s")
    print(f"  --jobs 1, sandboxed:  {one:6.1f} s")
    print(f"  --jobs 2, sandboxed:  {two:6.1f} s")
    ok = "OK" if speedup >= TARGET_SPEEDUP else "MISSED"
    print(f"  --jobs 2 is {speedup:.2f}x faster than --jobs 1 (target >= {TARGET_SPEEDUP}x): {ok}")
    ok = "OK" if per_sub < TARGET_SANDBOX_S else "MISSED"
    print(
        f"  sandbox overhead: {per_sub:+.2f} s per submission (target < {TARGET_SANDBOX_S} s): {ok}"
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip-labs", action="store_true")
    parser.add_argument("--skip-class", action="store_true")
    parser.add_argument("--class-size", type=int, default=12)
    args = parser.parse_args()
    # nbgrader, its kernels and their sandboxes inherit the prefix: killed or not, their
    # namespaces and they themselves are gone at exit (benchmarks/_namespaces.py).
    prefix = bench_prefix("grade")
    os.environ["K8SNET_NS_PREFIX"] = prefix
    clean_up_on_exit(prefix)
    os.environ["PATH"] = nbtools.tool_env()["PATH"]
    if not args.skip_class:
        class_batch(args.class_size)
    if not args.skip_labs:
        per_lab()
    return 0


if __name__ == "__main__":
    sys.exit(main())
