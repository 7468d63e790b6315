"""Honest submissions of the real labs score in the sandbox exactly what they score without.

One `k8snet grade --jobs 2` per lab (01, 02, 06), all three at once: each lab's solution
gets full marks (its unsandboxed round trip in tests/labs asserts the same), lab 01's
untouched release gets zero, and a lab 02 submission whose exercise 1 calls the course's
own bridge plugin gets zero for exercise 1 only, saying why (the static check).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from grader import nbtools
from grader.labs import load_lab
from grader.sandbox import unavailable_reason
from tests.grading.test_static_check import BRIDGE_BY_REFERENCE
from tests.nbharness import find_cell

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(bool(unavailable_reason()), reason=unavailable_reason() or "ok"),
]
LABS = ("01-netns-veth", "02-bridge-vs-routed", "06-kube-proxy")
K8SNET = str(Path(sys.executable).parent / "k8snet")


def grade_class(root: Path, lab: str) -> dict[str, dict[str, str]]:
    course = root / lab
    (course / "submitted").mkdir(parents=True)
    shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
    shutil.copytree(nbtools.REPO / "solutions" / lab, course / "solutions" / lab)
    notebooks = {"solution": nbtools.REPO / "solutions" / lab / f"{lab}.ipynb"}
    if lab == LABS[0]:
        notebooks["release"] = nbtools.REPO / "labs" / lab / f"{lab}.ipynb"
    if lab == LABS[1]:
        nb = json.loads(notebooks["solution"].read_text())
        find_cell(nb, "ex1-solution")["source"] = BRIDGE_BY_REFERENCE
        notebooks["by-reference"] = root / "by-reference.ipynb"
        notebooks["by-reference"].write_text(json.dumps(nb))
    for student, path in notebooks.items():
        nbtools.submit(course, lab, student, path)
    argv = [K8SNET, "grade", lab, "--course", str(course), "--jobs", "2"]
    out = subprocess.run(argv, cwd=course, capture_output=True, text=True, timeout=1200)
    assert out.returncode == 0, out.stdout + out.stderr
    return {r["student"]: r for r in csv.DictReader((course / f"grades-{lab}.csv").open())}


def test_lab_solutions_score_full_marks_in_the_sandbox(tmp_path: Path) -> None:
    with ThreadPoolExecutor(len(LABS)) as pool:
        results = dict(
            zip(LABS, pool.map(lambda lab: grade_class(tmp_path, lab), LABS), strict=True)
        )
    for lab, rows in results.items():
        total = load_lab(lab).total_points
        solution = rows["solution"]
        assert solution["status"] == "ok", (lab, json.dumps(solution))
        assert float(solution["score"]) == total == float(solution["max_score"]), (lab, solution)
    assert float(results[LABS[0]]["release"]["score"]) == 0
    ref = results[LABS[1]]["by-reference"]
    assert float(ref["check-ex1-switched"]) == float(ref["check-ex1-gateway"]) == 0
    assert float(ref["check-ex2-routed"]) > 0
    graded = tmp_path / LABS[1] / "autograded" / "by-reference" / LABS[1] / f"{LABS[1]}.ipynb"
    result = nbtools.GradeResult("by-reference", notebook=json.loads(graded.read_text()))
    assert "calls the course's reference implementation" in result.cell_text("check-ex1-switched")
    assert "course.podnet.bridge.add_pod" in result.cell_text("check-ex1-switched")
