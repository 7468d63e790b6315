"""`k8snet check` and `k8snet grade` on the fixture lab, run as a learner/instructor would."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from grader import nbtools

FIXTURES = nbtools.REPO / "tests" / "fixtures"
SOLUTION = FIXTURES / "solutions" / "00-fixture" / "00-fixture.ipynb"
K8SNET = str(Path(sys.executable).parent / "k8snet")
pytestmark = pytest.mark.slow

# A cell that ignores the interrupt nbgrader sends at the per-cell timeout: only the
# per-submission budget of `k8snet grade` can stop it.
UNSTOPPABLE = "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(3600)"


def k8snet(
    *args: str, cwd: Path | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, K8SNET_EXTRA_LABS=str(FIXTURES / "labs"))
    return subprocess.run(
        [K8SNET, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_check_solution_full_marks() -> None:
    out = k8snet("check", "00-fixture", str(SOLUTION))
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip().splitlines()[-1] == "score: 3/3"
    assert "[PASS] the pod namespace exists and its loopback is UP" in out.stdout


def test_check_release_zero_with_feedback(tmp_path: Path) -> None:
    release = nbtools.release("00-fixture", FIXTURES, tmp_path) / "00-fixture.ipynb"
    out = k8snet("check", "00-fixture", str(release))
    assert out.returncode == 1
    assert out.stdout.strip().splitlines()[-1] == "score: 0/3"
    assert "the pod namespace does not exist" in out.stdout
    assert "hint:" in out.stdout


def _submit(course: Path, student: str, nb: dict | str) -> None:
    dest = course / "submitted" / student / "00-fixture"
    dest.mkdir(parents=True)
    text = nb if isinstance(nb, str) else json.dumps(nb)
    (dest / "00-fixture.ipynb").write_text(text)


def test_grade_goes_on_past_broken_and_hanging_submissions(tmp_path: Path) -> None:
    from course.runs import load_runs

    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
    shutil.copytree(FIXTURES / "solutions", course / "solutions")
    solution = json.loads(SOLUTION.read_text())
    hang = json.loads(SOLUTION.read_text())
    for cell in hang["cells"]:
        if cell["metadata"].get("nbgrader", {}).get("grade_id") == "ex1-solution":
            cell["source"] = UNSTOPPABLE
    _submit(course, "alice", solution)
    _submit(course, "bob", "{ this is not a notebook")
    _submit(course, "carol", hang)

    out = k8snet("grade", "00-fixture", "--course", str(course), "--timeout", "40", cwd=course)
    assert out.returncode == 0, out.stdout + out.stderr
    rows = {r["student"]: r for r in csv.DictReader((course / "grades-00-fixture.csv").open())}
    assert rows["alice"]["status"] == "ok"
    assert float(rows["alice"]["score"]) == 3
    assert rows["bob"]["status"].startswith("error")
    assert rows["carol"]["status"].startswith("timeout")
    assert float(rows["carol"]["score"]) == 0
    assert "alice" in out.stdout and "3/3" in out.stdout
    # the killed kernel's namespaces were reaped (runs of live kernels belong to tests running
    # in parallel with this one, in another pytest worker)
    assert not [r for r in load_runs() if r.lab == "00-fixture" and not r.owner_alive()]


def test_check_leaves_a_detached_lab_alone(monkeypatch):
    """`k8snet check` reaps runs of dead kernels, never a `k8snet up` lab being explored."""
    import uuid

    from course.kernel import list_netns
    from course.topology import Cluster
    from grader.grading import reap_orphans

    lab = f"t-detached-{uuid.uuid4().hex[:6]}"
    up = Cluster(lab, nodes=1, pod_network=None, underlay=False, detached=True).build()
    dead = Cluster(lab, nodes=1, pod_network=None, underlay=False).build()
    for rec in (up.record, dead.record):  # both owners gone, like `k8snet up` after it exits
        rec.pid, rec.started = 2**22 + 1, None
        rec.save()
    try:
        removed = reap_orphans(lab)
        assert f"{dead.prefix}-node1" in removed
        assert list_netns(up.prefix + "-") == [f"{up.prefix}-node1"]
    finally:
        up.destroy()
        dead.destroy()
