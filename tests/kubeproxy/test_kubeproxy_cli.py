"""`k8snet proxy-rules`: manifests in, kube-proxy's payload out; errors name the field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from course.kernel import Netns
from grader.cmd_proxy_rules import proxy_rules_payload

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "manifests" / "06-web"
EXAMPLE_SLICE = ROOT / "examples" / "manifests" / "06-web-endpointslice.yaml"


def k8snet(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "grader.cli", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )  # fmt: skip


def test_pods_become_three_endpoints() -> None:
    payload = proxy_rules_payload([EXAMPLE], node="node1", cluster_cidr="10.244.0.0/16")
    lines = payload.splitlines()
    svc = [line for line in lines if line.startswith("-A KUBE-SVC-") and " -> " in line]
    assert [line.split('"')[1] for line in svc] == [
        "default/web:http -> 10.244.1.2:8080",
        "default/web:http -> 10.244.1.3:8080",
        "default/web:http -> 10.244.1.4:8080",
    ]
    assert "--probability 0.3333333333" in svc[0] and "--probability 0.5000000000" in svc[1]
    assert "statistic" not in svc[2]
    assert "! -s 10.244.0.0/16 -j KUBE-MARK-MASQ" in payload


def test_hand_written_slice_wins_and_not_ready_is_left_out() -> None:
    payload = proxy_rules_payload([EXAMPLE_SLICE])
    assert "10.244.1.3" not in payload
    assert payload.count("-j DNAT") == 2


def test_cli_prints_the_payload_and_it_applies(node_ns: Netns) -> None:
    out = k8snet("proxy-rules", str(EXAMPLE), "--node", "node1", "--cluster-cidr", "10.244.0.0/16")
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("*filter\n") and out.stdout.endswith("COMMIT\n")
    node_ns.apply_iptables(out.stdout, noflush=True)
    assert "KUBE-SVC-CDGGSHYLG3RE2FKL" in node_ns.iptables_save("nat")
    with_jumps = k8snet("proxy-rules", str(EXAMPLE), "--show-jumps")
    assert "#   iptables -t nat -I PREROUTING" in with_jumps.stdout
    node_ns.apply_iptables(with_jumps.stdout, noflush=True)  # comments are valid restore input


def test_cli_reports_manifest_errors(tmp_path: Path) -> None:
    bad = tmp_path / "svc.yaml"
    bad.write_text((EXAMPLE / "service.yaml").read_text().replace("port: 80 ", "port: http "))
    out = k8snet("proxy-rules", str(bad))
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"error: {bad}: Service default/web: spec.ports[0].port: "
        "must be an integer 1-65535, got 'http'"
    )
    out = k8snet("proxy-rules", str(EXAMPLE), "--cluster-cidr", "10.244.0.0/33")
    assert out.returncode == 2 and "--cluster-cidr" in out.stderr
