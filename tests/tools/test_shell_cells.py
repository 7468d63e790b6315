"""`%%ns ROLE` cells and `sh(role, script)`: bash inside one namespace of the current run.

One lab 02 run (two nodes, four cluster pods, a router) serves every test here: it has
exact roles (`node1`, `router`, `underlay`, `node1-a`) and pod aliases (`a`, `pod-a`).
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator

import pytest

from course import notebook
from course.notebook import sh, start_lab
from course.roles import UnknownRole
from course.topology import Cluster

LAB = "02-bridge-vs-routed"


@pytest.fixture(scope="module")
def run() -> Iterator[Cluster]:
    cluster = start_lab(LAB)
    yield cluster
    cluster.destroy()


def netns_inode(name: str) -> str:
    return f"net:[{os.stat(f'/run/netns/{name}').st_ino}]"


def test_commands_run_in_the_roles_namespace(run: Cluster) -> None:
    done = sh("node1", "ip -br addr; readlink /proc/self/ns/net")
    assert done.returncode == 0, done.stderr
    assert "192.168.1.11/24" in done.stdout  # node1's underlay address, not the host's
    assert netns_inode(f"{run.prefix}-node1") in done.stdout
    assert os.readlink("/proc/self/ns/net") not in done.stdout


@pytest.mark.parametrize("alias", ["node1-a", "a", "pod-a"])
def test_pod_aliases_enter_the_pods_namespace(run: Cluster, alias: str) -> None:
    done = sh(alias, "readlink /proc/self/ns/net")
    assert done.stdout.strip() == netns_inode(f"{run.prefix}-node1-a")


def test_unknown_role_lists_the_roles_that_exist(run: Cluster) -> None:
    with pytest.raises(UnknownRole) as caught:
        sh("node9", "true")
    message = str(caught.value)
    assert "no role 'node9'" in message
    for role in ("node1", "node2", "router", "underlay", "node1-a"):
        assert role in message
    assert "pods also answer to" in message and "pod-a" in message


def test_exit_status_and_stderr_are_returned(run: Cluster) -> None:
    done = sh("router", "echo out; ip route get 10.99.0.1 from 1.2.3.4 iif nope; exit 3")
    assert done.returncode == 3
    assert done.stdout == "out\n"
    assert "nope" in done.stderr or "Cannot find device" in done.stderr
    with pytest.raises(subprocess.CalledProcessError):
        sh("router", "false", check=True)


def test_a_hanging_command_is_cut_at_the_timeout(run: Cluster) -> None:
    t0 = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as caught:
        sh("node1", "echo before; sleep 30", timeout=0.5)
    assert time.monotonic() - t0 < 3
    assert caught.value.output == "before\n"


def test_a_background_job_does_not_hold_the_cell(run: Cluster) -> None:
    """`server &` returns at once; the server keeps running in the namespace."""
    t0 = time.monotonic()
    done = sh("node2", "sleep 30 & echo started $!")
    assert time.monotonic() - t0 < 3 and done.returncode == 0
    pid = int(done.stdout.split()[1])
    assert os.readlink(f"/proc/{pid}/ns/net") == netns_inode(f"{run.prefix}-node2")
    os.kill(pid, 9)


def test_the_environment_names_the_run(run: Cluster) -> None:
    done = sh("pod-c", 'echo "$LAB $RUN $ROLE $NS"; ip -n "$RUN-node2" -br link show lo')
    first, second = done.stdout.splitlines()
    assert first == f"{LAB} {run.prefix} pod-c {run.prefix}-node2-c"
    assert second.startswith("lo")


def test_without_a_run_the_message_says_to_run_the_setup_cell(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(notebook, "_current", None)
    with pytest.raises(notebook.NoRun, match="setup cell"):
        sh("node1", "true")
