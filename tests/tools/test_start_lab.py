"""`start_lab`: re-running the setup cell, and reaping runs whose kernel is gone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from course import notebook
from course.kernel import list_netns
from course.notebook import current_run, start_lab
from course.runs import load_runs, state_dir
from course.topology import Cluster

LAB = "01-netns-veth"


def start_in_child() -> tuple[subprocess.Popen[str], str]:
    """A 'kernel' that runs the setup cell and then waits (to be SIGKILLed: no cleanup)."""
    script = (
        "import time\n"
        "from course.notebook import start_lab\n"
        f"c = start_lab({LAB!r})\n"
        "c.netns('pod-a')\n"
        "print(c.prefix, flush=True)\n"
        "time.sleep(60)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    return child, child.stdout.readline().strip()


def test_a_killed_kernels_run_is_reaped_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    child, prefix = start_in_child()
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    assert set(list_netns(prefix + "-")) == {f"{prefix}-node1", f"{prefix}-pod-a"}
    state_dir(prefix).mkdir(parents=True)  # files a run keeps (BIRD, CNI reservations)
    capsys.readouterr()
    cluster = start_lab(LAB)
    try:
        lines = capsys.readouterr().out.splitlines()
        assert lines == [f"removed 1 leftover run of {LAB} from a kernel that was restarted"]
        assert list_netns(prefix + "-") == []
        assert prefix not in {r.prefix for r in load_runs()}
        assert not state_dir(prefix).exists()
    finally:
        cluster.destroy()


def test_a_live_kernels_run_and_a_detached_run_are_left_alone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    child, prefix = start_in_child()
    up = Cluster(LAB, nodes=1, underlay=False, pod_network=None, detached=True).build()
    try:
        cluster = start_lab(LAB)
        cluster.destroy()
        assert "removed" not in capsys.readouterr().out
        assert list_netns(prefix + "-") and list_netns(up.prefix + "-")
    finally:
        child.kill()
        child.wait()
        up.destroy()
        notebook.reap_leftovers(LAB)


def test_running_the_setup_cell_again_starts_afresh(capsys: pytest.CaptureFixture[str]) -> None:
    first = start_lab(LAB)
    first.netns("pod-a")
    capsys.readouterr()
    second = start_lab(LAB)
    try:
        out = capsys.readouterr().out
        assert out == f"started {LAB} afresh: removed this kernel's earlier run {first.prefix}\n"
        assert second.prefix != first.prefix
        assert list_netns(first.prefix + "-") == []
        assert current_run() is second
        assert [ln["name"] for ln in second.node(1).ns.links()] == ["lo"]
    finally:
        second.destroy()


def test_overrides_change_the_topology() -> None:
    cluster = start_lab(LAB, pods_per_node=1)
    try:
        assert [p.name for p in cluster.pods] == ["a"]
    finally:
        cluster.destroy()
