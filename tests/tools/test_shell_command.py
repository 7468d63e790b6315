"""`k8snet shell [LAB] ROLE` with commands on stdin: right namespace, their exit status."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.topology import Cluster

K8SNET = [sys.executable, "-m", "grader.cli"]
LAB = "t-shell"  # a lab id of its own, so another live run never wins "newest"


@pytest.fixture(scope="module")
def detached() -> Iterator[Cluster]:
    """What `k8snet up` leaves: a detached run (no owner process to wait for)."""
    cluster = Cluster(LAB, nodes=1, pods_per_node=1, pod_network="bridge", detached=True).build()
    yield cluster
    cluster.destroy()


def shell(*words: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*K8SNET, "shell", *words], input=stdin, capture_output=True, text=True, timeout=30
    )


def test_commands_on_stdin_run_in_the_roles_namespace(detached: Cluster) -> None:
    done = shell(LAB, "node1", stdin="readlink /proc/self/ns/net\nip -br addr show eth0\n")
    assert done.returncode == 0, done.stderr
    inode = os.stat(f"/run/netns/{detached.prefix}-node1").st_ino
    assert f"net:[{inode}]" in done.stdout
    assert "192.168.1.11/24" in done.stdout


def test_exit_status_is_the_commands(detached: Cluster) -> None:
    assert shell(LAB, "pod-a", stdin="ip -br addr | grep -q 10.244.1.2\nexit 7\n").returncode == 7
    assert shell(LAB, "a", stdin="ip -br addr | grep -q 10.244.1.2\n").returncode == 0


def test_unknown_role_and_no_run_are_explained(detached: Cluster) -> None:
    done = shell(LAB, "node7", stdin="true\n")
    assert done.returncode == 2
    assert "no role 'node7'" in done.stderr and "node1" in done.stderr
    done = shell("no-such-lab", "node1", stdin="true\n")
    assert done.returncode == 2 and "no live lab run of no-such-lab" in done.stderr


def test_a_notebook_run_is_found_while_its_kernel_lives(tmp_path: Path) -> None:
    """A run owned by a live process (a kernel) is entered; once the owner dies, it is not."""
    script = (
        "import sys, time\n"
        "from course.topology import Cluster\n"
        "c = Cluster('t-shell-nb', nodes=1, underlay=False).build()\n"
        "print(c.prefix, flush=True)\n"
        "time.sleep(60)\n"
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        prefix = owner.stdout.readline().strip()
        done = shell("t-shell-nb", "node1", stdin="readlink /proc/self/ns/net\n")
        assert done.returncode == 0, done.stderr
        assert str(os.stat(f"/run/netns/{prefix}-node1").st_ino) in done.stdout
    finally:
        owner.terminate()  # SIGTERM: the owner's handler tears its run down
        owner.wait(timeout=10)
    assert shell("t-shell-nb", "node1", stdin="true\n").returncode == 2
