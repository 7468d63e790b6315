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
]


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
    left = list_netns(prefix)
    records = sorted(p.name for p in RUN_DIR.glob(f"{prefix}*.json")) if RUN_DIR.is_dir() else []
    assert proc.returncode != 0, f"the benchmark did not notice {sig.name}:\n{output}"
    assert not left and not records, (
        f"{script} killed by {sig.name} while {alive} existed left namespaces {left} and run "
        f"records {records}:\n{output}"
    )
