"""What the independent checks cost on top of nbgrader's own grading, for lab 01.

In one run, on this machine, it times `nbgrader autograde` of:
  - the lab-01 solution notebook, graded as the course grades it (VerifyingExecute: a
    verifier process per notebook, every check re-run outside the kernel with real packets);
  - the same notebook with every check cell emptied (`pass`) and nbgrader's stock executor:
    the same cells build the same namespaces, but nothing is checked.
Runs alternate (baseline, checked, baseline, ...) so machine noise hits both alike; the
medians are compared. Target: the checks add less than 50% to nbgrader's own cost.

Usage: python benchmarks/grading.py [--runs N]      (default 3 runs of each)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
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
STOCK_EXECUTOR = (
    "--Autograde.autograde_preprocessors=['nbgrader.preprocessors.Execute',"
    "'nbgrader.preprocessors.IgnorePattern',"
    "'nbconvert.preprocessors.ClearMetadataPreprocessor',"
    "'nbgrader.preprocessors.LimitOutput','nbgrader.preprocessors.SaveAutoGrades',"
    "'nbgrader.preprocessors.AssignLatePenalties','nbgrader.preprocessors.CheckCellMetadata']"
)


def unchecked_source(tmp: Path) -> Path:
    """A source tree whose lab-01 notebook has the same cells, check cells emptied."""
    src = tmp / "solutions" / LAB
    shutil.copytree(ROOT / "solutions" / LAB, src)
    path = src / f"{LAB}.ipynb"
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("grade") and not meta.get("solution"):
            cell["source"] = "pass"
    path.write_text(json.dumps(nb))
    return tmp


def time_autograde(course: Path, notebook: Path, student: str, extra: list[str]) -> float:
    nbtools.submit(course, LAB, student, notebook)
    t0 = time.perf_counter()
    result = nbtools.autograde_submitted(course, LAB, student, extra_args=extra)
    elapsed = time.perf_counter() - t0
    if result.score != result.max_score:
        raise SystemExit(f"{student}: expected full marks, got {result.score}/{result.max_score}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    runs = parser.parse_args().runs
    # nbgrader and its kernels inherit the prefix: killed or not, their namespaces and they
    # themselves are gone at exit (benchmarks/_namespaces.py).
    prefix = bench_prefix("grade")
    os.environ["K8SNET_NS_PREFIX"] = prefix
    clean_up_on_exit(prefix)
    checked_nb = ROOT / "solutions" / LAB / f"{LAB}.ipynb"
    with tempfile.TemporaryDirectory(prefix="k8snet-bench-") as tmp:
        plain_root = unchecked_source(Path(tmp))
        plain_nb = plain_root / "solutions" / LAB / f"{LAB}.ipynb"
        with (
            nbtools.scratch_course(LAB) as checked,
            nbtools.scratch_course(LAB, plain_root) as plain,
        ):
            base, full = [], []
            for i in range(runs):
                base.append(time_autograde(plain, plain_nb, f"base{i}", [STOCK_EXECUTOR]))
                full.append(time_autograde(checked, checked_nb, f"checked{i}", []))
    b, f = statistics.median(base), statistics.median(full)
    overhead = (f - b) / b
    print(f"nbgrader autograde, lab {LAB}, {runs} runs each (median):")
    print(f"  same cells, no checks (stock executor): {b:6.2f} s   runs {_fmt(base)}")
    print(f"  with independent checks (course):       {f:6.2f} s   runs {_fmt(full)}")
    print(f"  ratio checked/unchecked: {f / b:.2f}x; checks add {overhead:.0%}", end="")
    print(f" (target < {TARGET_OVERHEAD:.0%}): {'OK' if overhead < TARGET_OVERHEAD else 'MISSED'}")
    return 0


def _fmt(xs: list[float]) -> str:
    return ", ".join(f"{x:.2f}" for x in xs)


if __name__ == "__main__":
    sys.exit(main())
