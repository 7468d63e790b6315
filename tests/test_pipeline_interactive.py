"""Check cells in a learner's live Jupyter kernel (no grader around) print the verdict.

Outside grading, `grader.nb.check` runs the verifier itself in an isolated process, prints
its verdict, and raises on failure so the cell shows red.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.nbharness import FIXTURES, find_cell

pytestmark = pytest.mark.slow
SOLUTION = FIXTURES / "solutions" / "00-fixture" / "00-fixture.ipynb"


@pytest.fixture(autouse=True)
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in JupyterLab: no NBGRADER_EXECUTION in the kernel's environment."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    monkeypatch.setenv("K8SNET_EXTRA_LABS", str(FIXTURES / "labs"))


def run_live(nb: dict[str, Any]) -> Any:
    node = nbformat.reads(json.dumps(nb), as_version=4)
    NotebookClient(node, kernel_name="python3", timeout=60, allow_errors=True).execute()
    return node


def text(cell: Any) -> str:
    out = []
    for o in cell.outputs:
        out.append(o.get("text", "") if o.output_type == "stream" else o.get("ename", ""))
    return "".join(out)


def test_live_check_cells_print_the_verdict() -> None:
    nb = run_live(json.loads(SOLUTION.read_text()))
    cell = next(
        c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "check-ex1"
    )
    assert "[PASS] the pod namespace exists and its loopback is UP" in text(cell)


def test_live_failed_check_shows_red_with_its_explanation() -> None:
    nb = copy.deepcopy(json.loads(SOLUTION.read_text()))
    find_cell(nb, "ex1-solution")["source"] = (
        'subprocess.run(["ip", "netns", "add", pod_name], check=True)'
    )
    done = run_live(nb)
    cell = next(
        c for c in done.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "check-ex1"
    )
    assert "[FAIL] the pod's loopback is DOWN" in text(cell)
    assert "CheckFailed" in text(cell)
