"""No misleading lines in what a learner reads: kernels started with CurveZMQ keys.

ipykernel prints "Kernel is running over TCP without encryption" when its manager gave it no
keys. That line appeared in every `k8snet check` and in JupyterLab's log, and reads like
something the learner broke. Both kernel managers ask for keys now: the grader's executor
(here) and the image's Jupyter server (docker/jupyter/jupyter_config.json).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import zmq

from grader.executor import VerifyingExecute

ROOT = Path(__file__).resolve().parents[2]


def test_grader_kernels_get_curve_keys() -> None:
    km = VerifyingExecute(kernel_name="python3").create_kernel_manager()
    assert km.transport_encryption == ("auto" if zmq.has("curve") else "disabled")


def test_image_jupyter_config_asks_for_curve_keys() -> None:
    config = json.loads((ROOT / "docker" / "jupyter" / "jupyter_config.json").read_text())
    assert config == {"KernelManager": {"transport_encryption": "auto"}}
    assert "/opt/k8snet/venv/etc/jupyter/jupyter_config.json" in (ROOT / "Dockerfile").read_text()


def test_a_kernel_with_curve_keys_prints_no_warning() -> None:
    """The real kernel, started the way the executor starts it, says nothing on stderr."""
    code = (
        "from jupyter_client.manager import start_new_kernel\n"
        "km, kc = start_new_kernel(kernel_name='python3', transport_encryption='auto')\n"
        "reply = kc.execute_interactive('6 * 7', timeout=60)\n"
        "km.shutdown_kernel(now=True)\n"
        "print(reply['content']['status'])\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().endswith("ok"), proc.stdout + proc.stderr
    assert "without encryption" not in proc.stderr, proc.stderr
