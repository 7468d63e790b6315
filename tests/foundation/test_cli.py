"""The `k8snet` runtime commands as a learner types them."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

K8SNET = str(Path(sys.executable).with_name("k8snet"))


def _k8snet(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([K8SNET, *args], capture_output=True, text=True, env=env, timeout=120)


def test_doctor_passes_on_a_complete_machine():
    out = _k8snet("doctor")
    assert out.returncode == 0, out.stdout + out.stderr
    for feature in ("veth", "vxlan", "MASQUERADE", "nftables", "conntrack", "bird", "Scapy"):
        assert feature in out.stdout


def test_doctor_names_what_is_missing_and_how_to_get_it(tmp_path):
    # A PATH on which every tool exists except BIRD.
    for tool in (
        "nsenter",
        "ip",
        "iptables",
        "iptables-restore",
        "iptables-save",
        "nft",
        "conntrack",
        "tcpdump",
        "dot",
        "ping",
    ):
        for d in ("/usr/sbin", "/usr/bin", "/sbin", "/bin"):
            if os.path.exists(f"{d}/{tool}"):
                (tmp_path / tool).symlink_to(f"{d}/{tool}")
                break
    env = {**os.environ, "PATH": f"{tmp_path}:{Path(sys.executable).parent}", "COLUMNS": "200"}
    out = _k8snet("doctor", env=env)
    assert out.returncode == 1
    assert "missing: bird" in out.stdout
    assert "apt-get install -y bird2" in out.stdout


def test_up_status_down_round_trip():
    prefix = f"knt{uuid.uuid4().hex[:4]}"
    env = {**os.environ, "K8SNET_NS_PREFIX": prefix, "COLUMNS": "200"}
    up = _k8snet("up", "sandbox", env=env)
    assert up.returncode == 0, up.stderr
    assert "10.244.1.2/24" in up.stdout
    status = _k8snet("status", env=env)
    assert "sandbox" in status.stdout and "detached" in status.stdout
    down = _k8snet("down", "sandbox", env=env)
    assert down.returncode == 0 and f"{prefix}-" in down.stdout
    assert not [p for p in os.listdir("/run/netns") if p.startswith(prefix + "-")]


def test_up_unknown_lab_is_a_clear_error():
    out = _k8snet("up", "99-nope")
    assert out.returncode == 2 and "unknown lab '99-nope'" in out.stdout
