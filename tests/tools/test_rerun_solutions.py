"""Re-running a cell is what learners do most: every solution notebook, each code cell run
twice in a row in one live kernel, still passes every check.

The kernel is driven by nbclient as JupyterLab would drive it (no grader around: check cells
run the verifier themselves), so this covers the setup cell (`start_lab` again), exercise
cells that create namespaces, veths, addresses, routes and servers, and observe cells.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from tests.nbharness import REPO

pytestmark = pytest.mark.slow
# Split in two files so the two pytest workers (one file each at a time) share the ~7 minutes:
# tests/tools/test_rerun_solutions_more.py runs the rest; together they cover every lab.
LABS = ["01-netns-veth", "02-bridge-vs-routed", "03-across-nodes", "06-kube-proxy"]


@pytest.fixture(autouse=True)
def live_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in JupyterLab: no NBGRADER_EXECUTION in the kernel's environment."""
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)


def doubled(nb: dict[str, Any]) -> dict[str, Any]:
    """Every code cell followed by a copy of itself (the same source, run again at once)."""
    out = copy.deepcopy(nb)
    cells = []
    for cell in nb["cells"]:
        cells.append(cell)
        if cell["cell_type"] == "code":
            again = copy.deepcopy(cell)
            again["id"] = f"{cell.get('id', 'c')}-again"
            again["metadata"].setdefault("tags", []).append("again")
            cells.append(again)
    out["cells"] = cells
    return out


def text(cell: Any) -> str:
    parts = []
    for o in cell.outputs:
        if o.output_type == "stream":
            parts.append(o.text)
        elif o.output_type == "error":
            parts.append(f"{o.ename}: {o.evalue}\n" + "\n".join(o.traceback))
    return "".join(parts)


@pytest.mark.parametrize("lab", LABS)
def test_every_cell_twice_still_passes(lab: str) -> None:
    run_twice(lab)


def run_twice(lab: str) -> None:
    source = json.loads((REPO / "solutions" / lab / f"{lab}.ipynb").read_text())
    node = nbformat.reads(json.dumps(doubled(source)), as_version=4)
    t0 = time.monotonic()
    NotebookClient(node, kernel_name="python3", timeout=180, allow_errors=True).execute()
    print(f"{lab}: {time.monotonic() - t0:.1f} s")
    errors = {
        f"{i}:{c.metadata.get('nbgrader', {}).get('grade_id')}": text(c)
        for i, c in enumerate(node.cells)
        if c.cell_type == "code" and any(o.output_type == "error" for o in c.outputs)
    }
    assert not errors, "\n\n".join(f"--- cell {k}\n{v}" for k, v in errors.items())
    checks = [
        c
        for c in node.cells
        if c.metadata.get("nbgrader", {}).get("grade_id", "").startswith("check-")
    ]
    assert checks
    for cell in checks:
        assert "[PASS]" in text(cell), text(cell)
