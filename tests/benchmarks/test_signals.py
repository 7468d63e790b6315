"""A benchmark killed by `timeout` (SIGTERM) or Ctrl+C (SIGINT) leaves no namespace behind.

Real benchmarks, really killed: each one runs under GNU `timeout` (which relays the signals
it receives to its child) with a private K8SNET_NS_PREFIX; the test waits until the benchmark
has namespaces of its own alive, signals `timeout`, and then looks for anything left under
that prefix: namespaces and run records.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from course.kernel import list_netns
from course.runs import PREFIX, RUN_DIR

ROOT = Path(__file__).resolve().parents[2]
APPEAR_WITHIN_S = 90.0
EXIT_WITHIN_S = 60.0

CASES = [
    ("topology.py", [], signal.SIGTERM),
    ("topology.py", [], signal.SIGINT),
    ("kubeproxy.py", ["1000"], signal.SIGTERM),
    ("kubeproxy.py", ["1000"], signal.SIGINT),
    ("cni.py", ["--pods", "50", "--rounds", "1"], signal.SIGTERM),
    ("cni.py", ["--pods", "50", "--rounds", "1"], signal.SIGINT),
    ("trace.py", ["--rounds", "10"], signal.SIGTERM),
    ("trace.py", ["--rounds", "10"], signal.SIGINT),
]
# Not nodeport.py: a SIGTERM landing inside pyroute2's netlink call (its sync API drives an
# asyncio loop) hung it in a CI rehearsal (killed after 60 s, two namespaces left). Known,
# not fixed yet: its handler raises KeyboardInterrupt wherever the main thread happens to be.


def inheritors(prefix: str) -> list[str]:
    """Processes (but zombies) whose K8SNET_NS_PREFIX starts with `prefix`: the run's own."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            env = (entry / "environ").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        marked = any(v.startswith(f"K8SNET_NS_PREFIX={prefix}".encode()) for v in env)
        if marked and state != "Z":
            found.append(f"{entry.name}: {(entry / 'cmdline').read_bytes()[:80]!r}")
    return found


def wait_for_namespaces(prefix: str, proc: subprocess.Popen[str]) -> list[str]:
    deadline = time.monotonic() + APPEAR_WITHIN_S
    while time.monotonic() < deadline:
        if found := list_netns(prefix):
            return found
        if proc.poll() is not None:
            pytest.fail(f"the benchmark ended before making a namespace:\n{proc.stdout.read()}")  # type: ignore[union-attr]
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no namespace under {prefix} after {APPEAR_WITHIN_S:.0f} s")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("script", "args", "sig"), CASES, ids=[f"{c[0]}-{c[2].name}" for c in CASES]
)
def test_killed_benchmark_leaves_nothing(script: str, args: list[str], sig: signal.Signals) -> None:
    prefix = f"{PREFIX}sig{secrets.token_hex(2)}"
    env = {**os.environ, "K8SNET_NS_PREFIX": prefix, "PYTHONUNBUFFERED": "1"}
    argv = ["timeout", "600", sys.executable, str(ROOT / "benchmarks" / script), *args]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        alive = wait_for_namespaces(prefix, proc)
        proc.send_signal(sig)  # to `timeout`, which relays it to the benchmark
        output, _ = proc.communicate(timeout=EXIT_WITHIN_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)  # SIGKILLed inheritors: let the kernel finish taking them down
    left = list_netns(prefix)
    alive = inheritors(prefix)
    records = sorted(p.name for p in RUN_DIR.glob(f"{prefix}*.json")) if RUN_DIR.is_dir() else []
    assert proc.returncode != 0, f"the benchmark did not notice {sig.name}:\n{output}"
    assert not alive, f"{script} killed by {sig.name} left processes running: {alive}"
    assert not left and not records, (
        f"{script} killed by {sig.name} while {alive} existed left namespaces {left} and run "
        f"records {records}:\n{output}"
    )


def test_sweep_stops_what_inherited_the_prefix_then_deletes_its_namespaces() -> None:
    """benchmarks/grading.py hands its prefix down to nbgrader and the kernels, which run in
    sessions of their own: the sweep must stop them, or they would make namespaces after it.
    (A whole grading run takes minutes to reach its first namespace on a loaded machine, so
    this test stands in for it with one inheritor beside one namespace.)"""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from _namespaces import sweep

    prefix = f"{PREFIX}sig{secrets.token_hex(2)}"
    subprocess.run(["ip", "netns", "add", f"{prefix}-held"], check=True)
    env = {**os.environ, "K8SNET_NS_PREFIX": prefix}
    # Outside the namespace, like a kernel: deleting the namespace alone would not stop it.
    holder = subprocess.Popen(["sleep", "120"], env=env, start_new_session=True)
    try:
        deadline = time.monotonic() + 10
        while not inheritors(prefix) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert inheritors(prefix), "the stand-in inheritor did not start"
        assert sweep(prefix) == [f"{prefix}-held"]
        assert holder.wait(timeout=10) == -signal.SIGKILL
        assert not list_netns(prefix) and not inheritors(prefix)
    finally:
        if holder.poll() is None:
            holder.kill()
        subprocess.run(["ip", "netns", "del", f"{prefix}-held"], capture_output=True)


@pytest.mark.slow
def test_killed_k8snet_check_stops_its_kernel_and_leaves_nothing() -> None:
    """`timeout N k8snet check ...`: the kernel (in a session of its own) and its lab go too."""
    prefix = f"{PREFIX}sig{secrets.token_hex(2)}"
    env = {**os.environ, "K8SNET_NS_PREFIX": prefix}
    k8snet = Path(sys.executable).parent / "k8snet"
    notebook = ROOT / "solutions" / "01-netns-veth" / "01-netns-veth.ipynb"
    argv = ["timeout", "300", str(k8snet), "check", "01-netns-veth", str(notebook)]
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        alive = wait_for_namespaces(prefix, proc)
        proc.send_signal(signal.SIGTERM)  # to `timeout`, which relays it to k8snet
        output, _ = proc.communicate(timeout=EXIT_WITHIN_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    time.sleep(0.5)
    assert not inheritors(prefix), f"k8snet check left processes: {inheritors(prefix)}"
    assert not list_netns(prefix), (
        f"k8snet check left {list_netns(prefix)} (had {alive}):\n{output}"
    )


SWALLOWED = """
import os, signal, sys, weakref
sys.path.insert(0, "benchmarks")
from _namespaces import clean_up_on_exit, run

class Thing:
    pass

def interrupted_inside_a_callback(_):
    os.kill(os.getpid(), signal.SIGINT)  # the handler runs here, inside the weakref callback
    sum(range(100000))

def main():
    clean_up_on_exit(sys.argv[1])
    thing = Thing()
    ref = weakref.ref(thing, interrupted_inside_a_callback)
    del thing  # Python prints "Exception ignored in ..." and goes on
    return 0

run(main)
"""


def test_a_ctrl_c_dropped_inside_a_finalizer_still_fails_the_benchmark() -> None:
    """CI: topology.py got SIGINT while a WeakSet callback ran; Python dropped the
    KeyboardInterrupt, the benchmark ran to its end and exited 0."""
    prefix = f"{PREFIX}sig{secrets.token_hex(2)}"
    out = subprocess.run(
        [sys.executable, "-c", SWALLOWED, prefix], cwd=ROOT, capture_output=True, text=True
    )
    assert "Exception ignored" in out.stderr, out.stderr
    assert out.returncode == 128 + signal.SIGINT, out.stdout + out.stderr
