"""A grader killed with SIGKILL leaves its verifier copy (~35 MB) in /tmp; the next grading
run and `k8snet down` remove it, never the copy of a grader still running (issue 14).

Copies here are small stand-ins (the reaper looks only at the owner lock, not the content),
claimed by child processes exactly as `k8snet grade` claims its copy.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from grader.lifecycle import OWNER_SUFFIX, reap_stale_copies

K8SNET = str(Path(sys.executable).parent / "k8snet")
CLAIM = (
    "import sys, time; from pathlib import Path; from grader.lifecycle import claim_copy; "
    "claim_copy(Path(sys.argv[1])); print('claimed', flush=True); time.sleep(120)"
)


def fake_copy(folder: Path, name: str) -> Path:
    """A read-only tree, as grader.integrity leaves its copy."""
    root = folder / f"k8snet-verifier-{name}"
    (root / "grader").mkdir(parents=True)
    (root / "grader" / "verify.py").write_text("# copied\n")
    (root / "grader" / "verify.py").chmod(0o444)
    (root / "grader").chmod(0o555)
    root.chmod(0o555)
    return root


@pytest.fixture
def graders(tmp_path: Path) -> Iterator[dict[str, tuple[Path, subprocess.Popen[str]]]]:
    """Two graders holding a copy each; the test kills one with SIGKILL."""
    made = {}
    for name in ("killed", "running"):
        root = fake_copy(tmp_path, name)
        proc = subprocess.Popen(
            [sys.executable, "-c", CLAIM, str(root)], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None and proc.stdout.readline().strip() == "claimed"
        made[name] = (root, proc)
    os.kill(made["killed"][1].pid, signal.SIGKILL)
    made["killed"][1].wait()
    yield made
    for _, proc in made.values():
        proc.kill()
        proc.wait()


def test_the_copy_of_a_killed_grader_is_removed_and_a_running_one_kept(
    tmp_path: Path, graders: dict[str, tuple[Path, subprocess.Popen[str]]]
) -> None:
    unclaimed = fake_copy(tmp_path, "unclaimed")  # no owner file: not ours to judge
    killed, running = graders["killed"][0], graders["running"][0]

    assert reap_stale_copies(tmp_path) == [killed]

    assert not killed.exists() and not Path(f"{killed}{OWNER_SUFFIX}").exists()
    assert running.is_dir() and Path(f"{running}{OWNER_SUFFIX}").exists()
    assert unclaimed.is_dir()
    assert reap_stale_copies(tmp_path) == []  # the running grader still holds its lock


def test_k8snet_down_removes_the_copies_of_killed_graders(
    tmp_path: Path, graders: dict[str, tuple[Path, subprocess.Popen[str]]]
) -> None:
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    out = subprocess.run(
        [K8SNET, "down", "00-fixture"], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "removed 1 folder(s) left in /tmp by killed graders" in out.stdout
    assert not graders["killed"][0].exists() and graders["running"][0].is_dir()


def test_sandbox_scratch_folders_of_a_killed_grader_are_removed(tmp_path: Path) -> None:
    """The sandbox's socket folder and submission copy are claimed like a verifier copy: a
    grader killed while its kernel ran leaves them, the next reap removes them (not the
    files a symlink in the submission's copy points to), and never those of a live grader."""
    outside = tmp_path / "outside.txt"
    outside.write_text("not the grader's")
    made = (
        "import sys, time, os; from pathlib import Path; import tempfile; "
        "tempfile.tempdir = sys.argv[1]; from grader.sandbox import _scratch_folder; "
        "k = _scratch_folder('k8snet-kernel-'); s = _scratch_folder('k8snet-submission-'); "
        "os.symlink(sys.argv[2], s / 'link'); (s / 'nb.ipynb').write_text('{}'); "
        "print(k, s, flush=True); time.sleep(120)"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", made, str(tmp_path), str(outside)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        folders = [p.stdout.readline().split() for p in procs if p.stdout is not None]
        killed, running = [[Path(f) for f in pair] for pair in folders]
        assert all(f.is_dir() and Path(f"{f}{OWNER_SUFFIX}").exists() for f in killed + running)
        assert reap_stale_copies(tmp_path) == []  # both graders alive
        os.kill(procs[0].pid, signal.SIGKILL)
        procs[0].wait()

        assert sorted(reap_stale_copies(tmp_path)) == sorted(killed)

        assert not any(f.exists() or Path(f"{f}{OWNER_SUFFIX}").exists() for f in killed)
        assert all(f.is_dir() for f in running)
        assert outside.read_text() == "not the grader's"
    finally:
        for p in procs:
            p.kill()
            p.wait()
