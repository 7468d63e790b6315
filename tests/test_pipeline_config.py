"""nbgrader settings that bite real courses, and the small pure parts of the pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell
from nbgrader.preprocessors import OverwriteCells
from nbgrader.utils import determine_grade
from traitlets.config.loader import PyFileConfigLoader

from grader.executor import literal_answers, snapshot_files, verdict_outputs
from grader.grading import CELL_TIMEOUT
from grader.labs import load_lab, module_name
from grader.nbtools import REPO, lab_ids
from grader.verdict import Verdict

FIXTURES = REPO / "tests" / "fixtures"


def load_config() -> object:
    return PyFileConfigLoader("nbgrader_config.py", path=str(REPO)).load_config()


def test_layout_maps_solutions_and_labs() -> None:
    cfg = load_config()
    assert cfg.CourseDirectory.source_directory == "solutions"  # type: ignore[attr-defined]
    assert cfg.CourseDirectory.release_directory == "labs"  # type: ignore[attr-defined]
    assert cfg.CourseDirectory.root == str(REPO)  # type: ignore[attr-defined]


def test_timeout_missing_cells_and_kernel_are_set() -> None:
    cfg = load_config()
    assert cfg.Execute.timeout == CELL_TIMEOUT  # type: ignore[attr-defined]
    assert cfg.Execute.interrupt_on_timeout is True  # type: ignore[attr-defined]
    assert cfg.Execute.kernel_name == "python3"  # type: ignore[attr-defined]
    assert cfg.OverwriteCells.add_missing_cells is True  # type: ignore[attr-defined]
    # the option really exists in the installed nbgrader (a typo would be silently ignored)
    assert "add_missing_cells" in OverwriteCells.class_trait_names()
    pre = cfg.Autograde.autograde_preprocessors  # type: ignore[attr-defined]
    assert pre[0] == "grader.executor.VerifyingExecute"
    assert "nbgrader.preprocessors.SaveAutoGrades" in pre


def _notebooks() -> list[Path]:
    found = list(FIXTURES.glob("solutions/*/*.ipynb"))
    for top in ("solutions", "labs"):
        found += list((REPO / top).glob("*/*.ipynb"))
    return found


@pytest.mark.parametrize("path", _notebooks(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_notebook_uses_the_python3_kernel(path: Path) -> None:
    assert json.loads(path.read_text())["metadata"]["kernelspec"]["name"] == "python3"


@pytest.mark.parametrize("lab", lab_ids(), ids=str)
def test_check_table_matches_the_solution_notebook(lab: str) -> None:
    """Every autograded cell has a check, with the same points, and vice versa."""
    nb = json.loads((REPO / "solutions" / lab / f"{lab}.ipynb").read_text())
    cells = {
        m["grade_id"]: float(m["points"])
        for c in nb["cells"]
        if (m := c["metadata"].get("nbgrader", {})).get("grade") and not m.get("solution")
    }
    table = {c.grade_id: float(c.points) for c in load_lab(lab).checks}
    assert cells == table


def test_literal_answers_read_only_plain_literals() -> None:
    cells = [
        new_code_cell("q1 = 'up'\nq2 = 3"),
        new_code_cell("q1 = 'down'  # changed my mind"),
        new_code_cell("class Eq(str):\n    pass\nq2 = Eq('x')\nq3: str = 'b'"),
        new_code_cell("this is not python"),
    ]
    assert literal_answers(cells, ("q1", "q2", "q3", "q4")) == {"q1": "down", "q3": "b"}


def test_failed_verdict_scores_zero_and_passed_full() -> None:
    fail = Verdict.fail("x", sent="s", observed="o", expected="e", hint="h")
    cell = new_code_cell("check()")
    cell.metadata = {"nbgrader": {"grade": True, "solution": False, "points": 2, "grade_id": "c"}}
    cell.outputs = verdict_outputs(fail)
    assert determine_grade(cell) == (0, 2)
    cell.outputs = verdict_outputs(Verdict.ok("fine"))
    assert determine_grade(cell) == (2, 2)


def test_verdict_round_trips_and_names_all_parts() -> None:
    v = Verdict.fail("no reply", sent="ICMP echo", observed="nothing", expected="a reply", hint="h")
    assert Verdict.from_json(v.to_json()) == v
    text = v.render()
    for part in ("sent:", "observed:", "expected:", "hint:"):
        assert part in text


def test_lab_modules_are_found_by_number() -> None:
    assert module_name("01-netns-veth") == "lab01"
    with pytest.raises(ValueError):
        module_name("netns")


def test_snapshot_notices_a_rewritten_library_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guard against a kernel rewriting library files on disk while grading."""
    pkg = tmp_path / "k8snet_fake_lib"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "layers.py").write_text("REPLY = None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = snapshot_files(("k8snet_fake_lib",))
    assert len(before) == 2
    assert snapshot_files(("k8snet_fake_lib",)) == before
    (pkg / "layers.py").write_text("REPLY = 'forged echo-reply'\n")
    assert snapshot_files(("k8snet_fake_lib",)) != before


def test_unknown_lab_is_refused_readably() -> None:
    import typer
    from typer.testing import CliRunner

    from grader.cmd_notebooks import register

    app = typer.Typer()
    register(app)
    out = CliRunner().invoke(app, ["check", "99-nothing"])
    assert out.exit_code == 2
    assert "unknown lab '99-nothing'" in out.output
