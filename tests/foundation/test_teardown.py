"""Teardown always happens: at exit, on SIGTERM, and after SIGKILL through `k8snet down --all`."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

K8SNET = str(Path(sys.executable).with_name("k8snet"))

BUILD = """
import sys, time
from course.topology import Cluster
c = Cluster("t-crash", nodes=int(sys.argv[1]), pods_per_node=int(sys.argv[2]), router=True)
{how}
"""


@pytest.fixture
def private_prefix(monkeypatch):
    """A namespace prefix of our own, so `down --all` here cannot touch anyone else's labs."""
    prefix = f"knt{uuid.uuid4().hex[:4]}"
    monkeypatch.setenv("K8SNET_NS_PREFIX", prefix)
    yield prefix
    subprocess.run([K8SNET, "down", "--all"], capture_output=True)


def _netns(prefix: str) -> list[str]:
    d = Path("/run/netns")
    return sorted(p.name for p in d.iterdir() if p.name.startswith(prefix + "-"))


def _spawn(how: str, nodes: int = 3, pods: int = 3) -> subprocess.Popen[str]:
    code = BUILD.format(how=how)
    return subprocess.Popen(
        [sys.executable, "-c", code, str(nodes), str(pods)],
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_atexit_tears_down_a_cluster_never_closed(private_prefix):
    proc = _spawn("c.build(); print('built', flush=True)")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "built" in out, err
    assert _netns(private_prefix) == []


def test_sigterm_tears_down(private_prefix):
    proc = _spawn("c.build(); print('built', flush=True); time.sleep(60)")
    assert proc.stdout.readline().strip() == "built"
    assert len(_netns(private_prefix)) == 14
    proc.send_signal(signal.SIGTERM)
    # communicate, not wait: the teardown's output must never fill a pipe nobody reads
    # (once in CI the process had not ended after 30 s of wait(), its stderr unread)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM, err
    assert _netns(private_prefix) == []


def test_sigkill_mid_build_then_down_all_leaves_nothing(private_prefix):
    host_links = subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout
    proc = _spawn("c.build(); print('built', flush=True)", nodes=10, pods=10)
    deadline = time.time() + 30
    while len(_netns(private_prefix)) < 20 and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    left = _netns(private_prefix)
    assert 0 < len(left) < 121, "the build should have been cut off midway"
    status = subprocess.run([K8SNET, "status"], capture_output=True, text=True)
    assert "gone" in status.stdout  # the dead owner is visible to the learner
    out = subprocess.run([K8SNET, "down", "--all"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert _netns(private_prefix) == []
    assert not list(Path("/run/k8s-netlabs/runs").glob(f"{private_prefix}-*.json"))
    assert (
        subprocess.run(["ip", "-br", "link"], capture_output=True, text=True).stdout == host_links
    )


def test_down_kills_processes_left_inside_lab_namespaces(private_prefix):
    # a duration nobody else sleeps for: pgrep must find this test's sleeper only
    duration = f"{3000 + random.randrange(100000)}.5"
    proc = _spawn(
        f"c.build(); c.pods[0].exec(['sleep', '{duration}']); print('built', flush=True); "
        "time.sleep(60)",
        nodes=1,
        pods=1,
    )
    assert proc.stdout.readline().strip() == "built"
    proc.kill()
    proc.wait(10)
    sleeper = subprocess.run(["pgrep", "-f", f"^sleep {duration}$"], capture_output=True, text=True)
    assert sleeper.stdout.strip(), "the container process should outlive its SIGKILLed owner"
    subprocess.run([K8SNET, "down", "--all"], check=True, capture_output=True)
    assert _netns(private_prefix) == []
    for pid in sleeper.stdout.split():
        assert not Path(f"/proc/{pid}").exists() or _zombie(pid)


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def test_a_reused_pid_does_not_own_an_old_run():
    from course.runs import RunRecord, process_start_time

    me = os.getpid()
    rec = RunRecord("knl-zzzz", "t-owner", me)
    assert rec.started == process_start_time(me) and rec.owned_by(me)
    reused = RunRecord("knl-zzzz", "t-owner", me, started=(rec.started or 0) - 1)
    assert not reused.owned_by(me) and not reused.owner_alive()


def test_down_all_leaves_other_prefixes_alone(private_prefix):
    """`down --all` under one K8SNET_NS_PREFIX must not touch another prefix's runs."""
    other = f"knt{uuid.uuid4().hex[:4]}"
    env = {**os.environ, "K8SNET_NS_PREFIX": other}
    script = (
        "from course.topology import Cluster; Cluster('t-other', nodes=1, detached=True).build()"
    )
    subprocess.run([sys.executable, "-c", script], env=env, check=True)
    try:
        subprocess.run([K8SNET, "down", "--all"], check=True, capture_output=True)
        assert len(_netns(other)) == 2, "another prefix's run was reaped (node1 + underlay)"
    finally:
        subprocess.run([K8SNET, "down", "--all"], env=env, capture_output=True)
    assert _netns(other) == []


def test_ctrl_c_during_teardown_waits_for_it_to_finish(private_prefix, monkeypatch):
    """Ctrl-C landing in the middle of teardown used to abort it (KeyboardInterrupt is not
    an Exception), leaving namespaces and BIRDs behind; it is now held until teardown ends."""
    from course import runs
    from course.kernel import list_netns
    from course.topology import Cluster

    monkeypatch.setattr(runs, "PREFIX", private_prefix)  # read at import: this process's too
    cluster = Cluster("t-intr", nodes=2, pods_per_node=1).build()

    def interrupted_hook() -> None:
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.1)  # a handler would have run by now, were the signal not held

    cluster.teardown_hooks.append(interrupted_hook)
    # Python's own Ctrl-C handler (an earlier test in this process may have set another).
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            cluster.destroy()  # the held Ctrl-C is delivered once everything is gone
    finally:
        signal.signal(signal.SIGINT, before)
    assert cluster.prefix.startswith(private_prefix + "-")
    assert list_netns(cluster.prefix) == []


def test_teardown_removes_the_notes_kept_for_the_run(private_prefix, monkeypatch):
    """Break/fix attempt counts and iptables-restore rejections live under /run per run;
    they go with the run (they used to pile up, and could mislead a later run)."""
    from course import runs
    from course.kernel import KernelError
    from course.kernel import netns as kernel_netns
    from course.topology import Cluster
    from grader import breakfix

    monkeypatch.setattr(runs, "PREFIX", private_prefix)
    cluster = Cluster("t-notes", nodes=1, pods_per_node=1).build()
    node = cluster.nodes[0].ns
    with pytest.raises(KernelError, match="rejected"):
        node.apply_iptables("*nat\n-A NO-SUCH-CHAIN -j ACCEPT\nCOMMIT\n")
    breakfix.count_attempt(cluster.prefix, "check-ex7")
    notes = [
        kernel_netns.RESTORE_ERRORS / f"{node.name}.txt",
        breakfix.ATTEMPTS_DIR / cluster.prefix,
    ]
    assert all(p.exists() for p in notes)
    cluster.destroy()
    assert [p for p in notes if p.exists()] == []


def test_teardown_removes_namespaces_a_signal_left_half_made(private_prefix):
    """Ctrl-C inside Netns.create leaves a name the cluster holds no object for: the empty
    file before the mount, or a mounted namespace not yet handed back (CI: benchmarks/cni.py
    interrupted while making pod p4 left knl...-p4). Teardown finds them by the run's prefix."""
    half = (
        "c.build(); from pathlib import Path; "
        "Path(f'/run/netns/{c.prefix}-half').touch(); "
        "import subprocess; subprocess.run(['ip', 'netns', 'add', f'{c.prefix}-whole'], "
        "check=True); print('built', flush=True)"
    )
    proc = _spawn(half, nodes=1, pods=1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and "built" in out, err
    assert _netns(private_prefix) == []
