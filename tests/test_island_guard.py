"""The island guard itself must fail a run that changes the host, also under pytest-xdist.

An inner pytest run uses the real conftest; a plugin replaces `host_snapshot` so that the
"after" snapshot differs, without touching the host (the guard's own rule).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = """
import itertools
import tests.conftest as c

_calls = itertools.count()
_real = c.host_snapshot


def _changed():
    snap = _real()
    if next(_calls) >= 1:  # the snapshot taken after the tests
        snap["routes"] += "\\n10.244.9.0/24 via 192.168.1.19 dev eth0  (planted by the test)"
    return snap


c.host_snapshot = _changed
"""


def _inner(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "plant_change.py").write_text(PLUGIN)
    (tmp_path / "test_nothing.py").write_text("def test_nothing():\n    pass\n")
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "plant_change",
            *extra,
            "--rootdir",
            str(ROOT),
            "-c",
            str(ROOT / "pyproject.toml"),
            "--confcutdir",
            str(ROOT / "tests"),
            str(ROOT / "tests" / "test_island_guard.py") + "::test_target",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={
            "PYTHONPATH": f"{tmp_path}:{ROOT}",
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "K8SNET_INNER": "1",
        },
    )


def test_target() -> None:
    """What the inner run executes: nothing at all (only the guard can fail it)."""
    if not __import__("os").environ.get("K8SNET_INNER"):
        pytest.skip("only meaningful inside the inner run")


@pytest.mark.parametrize("extra", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_guard_fails_a_run_that_changed_the_host(tmp_path: Path, extra: tuple[str, ...]) -> None:
    out = _inner(tmp_path, *extra)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "island check FAILED" in out.stdout
    assert "planted by the test" in out.stdout
