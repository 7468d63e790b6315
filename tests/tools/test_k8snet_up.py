"""`k8snet up LAB` builds what the notebook's setup cell builds, servers and rules included
(course.labs.LAB_PREPARE), and its daemons never hold the command's output open."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from importlib import import_module
from pathlib import Path

from course.kernel import list_netns
from course.labs import LAB_PREPARE, LAB_TOPOLOGIES
from course.runs import PREFIX

K8SNET = str(Path(sys.executable).with_name("k8snet"))
GET = 'exec 3<>/dev/tcp/192.168.1.11/30080; printf "GET / HTTP/1.0\\r\\n\\r\\n" >&3; cat <&3'


def test_every_setup_step_names_a_function_of_a_known_lab() -> None:
    for lab, target in LAB_PREPARE.items():
        module, _, function = target.partition(":")
        assert lab in LAB_TOPOLOGIES and callable(getattr(import_module(module), function))


def test_up_07_serves_the_nodeport_and_returns_through_a_pipe() -> None:
    """Through a pipe, as `k8snet up LAB | tail` would: the servers it leaves running must not
    inherit the pipe, or the command's reader would wait for them forever."""
    prefix = f"{PREFIX}up{secrets.token_hex(2)}"
    env = {**os.environ, "K8SNET_NS_PREFIX": prefix}
    lab = "07-nodeport-masquerade"
    try:
        up = subprocess.run(
            [K8SNET, "up", lab], env=env, capture_output=True, text=True, timeout=180
        )
        assert up.returncode == 0, up.stdout + up.stderr
        assert "set up as the notebook does" in up.stdout, up.stdout
        (client,) = [n for n in list_netns(prefix) if n.endswith("-client")]
        seen = subprocess.run(
            ["ip", "netns", "exec", client, "timeout", "10", "bash", "-c", GET],
            capture_output=True,
            text=True,
            timeout=30,
        )
        # a web pod answered the client through node1's NodePort, masqueraded by node1
        assert " saw 192.168.1.11:" in seen.stdout, seen.stdout + seen.stderr
    finally:
        down = subprocess.run(
            [K8SNET, "down", lab], env=env, capture_output=True, text=True, timeout=120
        )
        assert down.returncode == 0, down.stdout + down.stderr
    assert not list_netns(prefix)
