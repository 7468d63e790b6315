"""Every cell twice in a row, for the labs tests/tools/test_rerun_solutions.py leaves to this
file (two files: pytest's two workers take one file each at a time)."""

from __future__ import annotations

import pytest

from tests.nbharness import REPO
from tests.tools.test_rerun_solutions import LABS, live_env, run_twice

pytestmark = pytest.mark.slow
MORE = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir() and p.name not in LABS)
__all__ = ["live_env"]  # the fixture: the kernel's environment as in JupyterLab


@pytest.mark.parametrize("lab", MORE)
def test_every_cell_twice_still_passes(lab: str) -> None:
    run_twice(lab)


def test_every_lab_is_run_twice_by_one_of_the_two_files() -> None:
    every = sorted(p.name for p in (REPO / "solutions").iterdir() if p.is_dir())
    assert sorted(LABS + MORE) == every and len(MORE) >= 3
