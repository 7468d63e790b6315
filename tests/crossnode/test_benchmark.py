"""benchmarks/crossnode.py cleans up when stopped in the middle (SIGTERM and SIGINT)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import pytest

from course.kernel import list_netns
from tests.nbharness import REPO

from .test_bgp import birds_of

K8SNET_DOWN = [str(os.path.join(os.path.dirname(sys.executable), "k8snet")), "down", "--all"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_stopping_the_benchmark_mid_bgp_leaves_nothing(sig):
    private = f"kl3b{uuid.uuid4().hex[:3]}"
    env = {**os.environ, "K8SNET_NS_PREFIX": private}
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "benchmarks" / "crossnode.py"), "1"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not birds_of(private + "-") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert birds_of(private + "-"), "the benchmark never reached BGP mode"
        proc.send_signal(sig)
        proc.wait(30)
        assert proc.returncode != 0
        assert birds_of(private + "-") == [] and list_netns(private + "-") == []
    finally:
        proc.kill()
        subprocess.run(K8SNET_DOWN, env=env, capture_output=True)
