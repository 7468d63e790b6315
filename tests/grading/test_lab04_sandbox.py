"""Lab 04 graded in the sandbox: the learner's CNI plugin runs inside the submission's sandbox.

Lab 04's checks are the container runtime: they run the learner's plugin file. Run from the
verifier, that file would be root in the grading machine's own view (issue 14). One
`k8snet grade --jobs 2` of two submissions: the solution (full marks in the sandbox, as in
its unsandboxed round trip) and a plugin that, when the grader runs it, tries to read the
gradebook, `solutions/` and lab 04's answer-key module, to write next to the gradebook, and
to find the verifier's process; it reports what it found in its error object, which the
verdict shows. It finds nothing and gains nothing.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course.kernel import list_netns
from course.runs import PREFIX
from grader import nbtools
from grader.labs import load_lab
from grader.sandbox import unavailable_reason
from tests.nbharness import find_cell

NO_SANDBOX = unavailable_reason()
LAB = "04-cni-plugin"
K8SNET = str(Path(sys.executable).parent / "k8snet")

# The plugin's main(): what a determined student's plugin does when the grader runs it.
SNOOPING_MAIN = r'''
def main():
    """Look for what only the grading side has; report it in the error object."""
    found = []
    for path in @SECRETS@:
        try:
            with open(path, "rb") as f:
                f.read(16)
            found.append(f"GOT {path}")
        except OSError as exc:
            found.append(f"no {path} ({type(exc).__name__})")
    try:
        with open("@MARKER@", "w") as f:
            f.write("the plugin ran on the grading side")
        found.append("WROTE @MARKER@")
    except OSError as exc:
        found.append(f"cannot write @MARKER@ ({type(exc).__name__})")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        except OSError:
            continue
        if b"grader.verify" in cmd or b"nbgrader" in cmd:
            found.append(f"GRADER PROCESS {pid}")
    print(json.dumps({"cniVersion": "1.0.0", "code": 7, "msg": "; ".join(found)}))
    sys.exit(1)
'''


@pytest.mark.slow
@pytest.mark.skipif(bool(NO_SANDBOX), reason=NO_SANDBOX or "ok")
def test_plugin_runs_inside_the_sandbox(tmp_path: Path) -> None:
    course = tmp_path / "course"
    (course / "submitted").mkdir(parents=True)
    shutil.copy(nbtools.CONFIG, course / "nbgrader_config.py")
    shutil.copytree(nbtools.REPO / "solutions" / LAB, course / "solutions" / LAB)
    solution = nbtools.REPO / "solutions" / LAB / f"{LAB}.ipynb"
    marker = course / "plugin-was-here"
    secrets = [
        str(course / "gradebook.db"),
        str(solution),
        str(nbtools.REPO / "grader" / "labs" / "lab04.py"),
    ]
    nb = json.loads(solution.read_text())
    find_cell(nb, "ex1-solution")["source"] = SNOOPING_MAIN.replace(
        "@SECRETS@", repr(secrets)
    ).replace("@MARKER@", str(marker))
    snooper = tmp_path / "snooper.ipynb"
    snooper.write_text(json.dumps(nb))
    nbtools.submit(course, LAB, "solution", solution)
    nbtools.submit(course, LAB, "snooper", snooper)
    before = set(list_netns(PREFIX))

    argv = [K8SNET, "grade", LAB, "--course", str(course), "--jobs", "2"]
    out = subprocess.run(argv, cwd=course, capture_output=True, text=True, timeout=900)

    assert out.returncode == 0, out.stdout + out.stderr
    rows = {r["student"]: r for r in csv.DictReader((course / f"grades-{LAB}.csv").open())}
    snoop = rows["snooper"]
    for grade_id in ("check-ex1", "check-ex2", "check-ex3", "check-ex4"):
        assert float(snoop[grade_id]) == 0, (grade_id, snoop)
    graded = course / "autograded" / "snooper" / LAB / f"{LAB}.ipynb"
    text = nbtools.GradeResult("snooper", notebook=json.loads(graded.read_text())).cell_text(
        "check-ex1"
    )
    for path in secrets:  # the verdict shows the plugin's own report: it saw none of them
        assert f"no {path} (FileNotFoundError)" in text, text
    assert "GOT " not in text and "GRADER PROCESS" not in text, text
    assert f"cannot write {marker}" in text, text
    assert not marker.exists()

    total = load_lab(LAB).total_points
    honest = rows["solution"]
    assert honest["status"] == "ok", honest
    assert float(honest["score"]) == total == float(honest["max_score"]), honest
    # the grader's benches were made (and removed) inside the sandboxes, not on the host
    assert not [n for n in set(list_netns(PREFIX)) - before if "-chk" in n]


def test_files_the_submission_wrote_are_read_without_following_its_symlinks(
    tmp_path: Path,
) -> None:
    """Through /proc/<kernel>/root an absolute symlink resolves in the grader's own view:
    a reservations folder (or a file in it) pointing at the grader's files reads as empty."""
    from grader.inside import Sandbox

    secret = tmp_path / "answer-key"
    secret.write_text("the grader's own file")
    data = tmp_path / "networks" / "k8s-pod-network"
    data.mkdir(parents=True)
    (data / "10.244.1.2").write_text("pod-a\r\neth0")
    (data / "10.244.1.3").symlink_to(secret)
    (data / "10.244.1.4").mkdir()
    os.mkfifo(data / "10.244.1.5")  # would block a plain read
    (tmp_path / "linked").symlink_to(data)
    plugin = tmp_path / "my-bridge"
    plugin.write_text("#!/bin/sh\n")
    plugin.chmod(0o755)
    (tmp_path / "linked-plugin").symlink_to(plugin)
    here = Sandbox(os.getpid())  # the grader's own root stands in for a sandbox's

    assert here.inside(f"/proc/{os.getpid()}/root{data}") == str(data)
    assert here.read_folder(str(data)) == {"10.244.1.2": "pod-a\r\neth0"}
    assert here.read_folder(str(tmp_path / "linked")) == {}
    assert here.read_folder(f"{data}/../../networks/k8s-pod-network") == {}
    assert here.is_executable(str(plugin))
    assert not here.is_executable(str(tmp_path / "linked-plugin"))
    assert not here.is_executable(str(secret))


def test_break_fix_reads_the_mystery_reservations_without_following_symlinks(
    tmp_path: Path,
) -> None:
    """The break/fix probe (and the fault's `present`) read host-local's files of the
    mystery network through the sandbox root too: a dataDir or a reservation pointing at
    the grader's own files, or a FIFO, reads as nothing, and nothing blocks."""
    from course.cni.learner import reservations

    secret = tmp_path / "answer-key"
    secret.write_text("pod-z\r\neth0")
    real = tmp_path / "real"
    (real / "mystery-net").mkdir(parents=True)
    (real / "mystery-net" / "10.244.1.100").write_text("pod-x\r\neth0")
    (real / "mystery-net" / "10.244.1.101").symlink_to(secret)
    os.mkfifo(real / "mystery-net" / "10.244.1.102")  # a plain read would block forever
    (tmp_path / "linked").symlink_to(real)
    root = f"/proc/{os.getpid()}/root"  # the grader's own root stands in for a sandbox's

    assert reservations(Path(f"{root}{real}"), "mystery-net") == {"10.244.1.100": "pod-x"}
    assert reservations(Path(f"{root}{tmp_path}/linked"), "mystery-net") == {}
    assert reservations(Path(f"{root}{real}/../real"), "mystery-net") == {}
    # the learner's own lab (no sandbox root): the path is taken as it is, files still plain
    assert reservations(tmp_path / "linked", "mystery-net") == {"10.244.1.100": "pod-x"}
