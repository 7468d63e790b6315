"""`make labs`: labs/ is nbgrader's release of solutions/, and a stale copy is noticed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from grader import nbtools

FIXTURES = nbtools.REPO / "tests" / "fixtures"
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("lab", nbtools.lab_ids(), ids=str)
def test_committed_release_is_up_to_date(lab: str) -> None:
    stale = nbtools.release_differences(lab)
    assert not stale, f"labs/{lab} is stale ({stale}): run `make labs` and commit labs/"


def test_release_strips_solutions_and_keeps_checks(tmp_path: Path) -> None:
    out = nbtools.release("00-fixture", FIXTURES, tmp_path)
    text = (out / "00-fixture.ipynb").read_text()
    assert "BEGIN SOLUTION" not in text
    assert 'link\\", \\"set\\", \\"lo\\", \\"up' not in text
    assert 'ip\\", \\"-n\\", pod_name' not in text
    assert "raise NotImplementedError()" in text
    assert 'check(\\"00-fixture\\", \\"ex1-loopback\\")' in text
    assert not (tmp_path / "gradebook.db").exists()


def test_stale_release_is_detected(tmp_path: Path) -> None:
    root = tmp_path / "course"
    shutil.copytree(FIXTURES / "solutions", root / "solutions")
    nbtools.release("00-fixture", root, root)
    assert nbtools.release_differences("00-fixture", root) == []
    src = root / "solutions" / "00-fixture" / "00-fixture.ipynb"
    nb = json.loads(src.read_text())
    nb["cells"][0]["source"] = "# 00 fixture, edited after the last release"
    src.write_text(json.dumps(nb))
    assert nbtools.release_differences("00-fixture", root) == ["00-fixture.ipynb"]
