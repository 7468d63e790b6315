"""benchmarks/cni.py still runs end to end (2 pods, 1 round) and cleans up after itself."""

from __future__ import annotations

import os
import subprocess
import sys

from course.kernel import list_netns
from course.runs import PREFIX
from tests.nbharness import REPO


def test_cni_benchmark_smoke() -> None:
    before = set(list_netns(PREFIX + "-"))
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "cni.py"), "--pods", "2", "--rounds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=os.environ,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ADD, median per pod" in out.stdout and "x target" in out.stdout
    assert set(list_netns(PREFIX + "-")) <= before  # nothing of the benchmark is left
