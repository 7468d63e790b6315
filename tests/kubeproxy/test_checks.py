"""The ClusterIP distribution check: its statistics, and real packets against mutant rules.

Each known wrong rule set (a "mutant") must fail the check with its own message, and the
correct one must pass. Mutants are made the way a learner would get them wrong: by editing
the payload kube-proxy would write.
"""

from __future__ import annotations

import random
import socket
from collections.abc import Iterator

import pytest

from course.kubeproxy import Proxier, ProxierOptions, parse_manifests
from course.topology import Cluster
from grader.kubeproxy_checks import (
    ALPHA,
    Expectation,
    Flow,
    check_cluster_ip_distribution,
    chi2_critical,
    chi2_sf,
    every_rule_one_over_n_shares,
    judge,
    parse_conntrack,
)

# --- statistics -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "df", "p"),
    [(3.841458820694124, 1, 0.05), (5.991464547107979, 2, 0.05), (7.814727903251178, 3, 0.05),
     (9.487729036781154, 4, 0.05), (11.070497693516351, 5, 0.05), (6.634896601021214, 1, 0.01),
     (27.631021115928547, 2, 1e-6), (0.0, 3, 1.0)],
)  # fmt: skip
def test_chi2_sf_matches_tables(x: float, df: int, p: float) -> None:
    assert chi2_sf(x, df) == pytest.approx(p, rel=1e-9)


def test_critical_value_for_one_in_a_million() -> None:
    assert chi2_critical(2) == pytest.approx(27.631021, rel=1e-6)  # -2 ln(1e-6)
    assert chi2_sf(chi2_critical(4), 4) == pytest.approx(ALPHA, rel=1e-6)


def test_one_over_n_shares() -> None:
    assert every_rule_one_over_n_shares(3) == pytest.approx([1 / 3, 2 / 9, 4 / 9])


EXP = Expectation(
    cluster_ip="10.96.0.10", port=80, target_port=8080,
    ready={"a": "10.244.1.2", "b": "10.244.1.3", "c": "10.244.1.4"}, not_ready={},
)  # fmt: skip


def flows_from(picks: list[str], port: int = 8080) -> tuple[list[int], dict[int, Flow]]:
    sent = list(range(40000, 40000 + len(picks)))
    return sent, {sp: Flow(sp, ip, port) for sp, ip in zip(sent, picks, strict=True)}


def test_fair_samples_pass_at_the_stated_rate() -> None:
    """400 simulated fair runs of 3,000 connections (seeded): at 1e-6 none may fail."""
    rng = random.Random(6)
    ips = list(EXP.ready.values())
    failures = sum(not judge(*flows_from(rng.choices(ips, k=3000)), EXP).passed for _ in range(400))
    assert failures == 0


class _LossyEvents:
    """Stands in for `conntrack -E` on a machine so busy the kernel drops events."""

    def __init__(self, text: str) -> None:
        self._text = text

    def __enter__(self) -> _LossyEvents:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def text(self) -> str:
        return self._text

    def lost_events(self) -> bool:
        return True


def _event(sport: int, ip: str, port: int = 8080) -> str:
    return (
        f"[NEW] tcp 6 120 SYN_SENT src=10.244.1.9 dst=10.96.0.10 sport={sport} dport=80 "
        f"[UNREPLIED] src={ip} dst=10.244.1.9 sport={port} dport={sport}"
    )


@pytest.mark.parametrize("seen", [2400, 900])
def test_lost_events_judge_the_known_or_raise(monkeypatch: pytest.MonkeyPatch, seen: int) -> None:
    """Connections whose events the kernel dropped are unknown, not "untranslated": with
    most of them known the verdict is judged on those and says how many were lost; with
    fewer than half, the check says the machine was too busy instead of blaming anyone."""
    import grader.kubeproxy_checks as checks

    ports = list(range(40000, 43000))
    ips = list(EXP.ready.values())
    text = "\n".join(_event(p, ips[i % 3]) for i, p in enumerate(ports[:seen]))
    monkeypatch.setattr(checks, "ConntrackEvents", lambda node: _LossyEvents(text + "\nENOBUFS"))
    monkeypatch.setattr(checks, "run_in_netns", lambda *args, **kwargs: ports)
    monkeypatch.setattr(checks, "read_conntrack", lambda *args: {})
    node = type("Node", (), {"name": "knl-x-node1"})()
    if seen * 2 < len(ports):
        with pytest.raises(checks.ProbeError, match="machine too busy"):
            check_cluster_ip_distribution(node, "10.244.1.9", node, EXP)  # type: ignore[arg-type]
        return
    verdict = check_cluster_ip_distribution(node, "10.244.1.9", node, EXP)  # type: ignore[arg-type]
    assert verdict.passed, verdict
    assert f"{seen} new TCP connections" in verdict.sent and "600 more were sent" in verdict.sent


def test_synthetic_mutant_messages() -> None:
    rng = random.Random(1)
    skewed = [rng.choices(list(EXP.ready.values()), weights=[3, 2, 4])[0] for _ in range(3000)]
    verdict = judge(*flows_from(skewed), EXP)
    assert not verdict.passed and "skewed towards the last endpoint (c)" in verdict.summary
    other = [rng.choices(list(EXP.ready.values()), weights=[5, 3, 2])[0] for _ in range(3000)]
    verdict = judge(*flows_from(other), EXP)
    assert verdict.summary == "connections are not spread evenly over the endpoints"
    sent, flows = flows_from(["10.244.1.2"] * 3000, port=80)
    assert "wrong port" in judge(sent, flows, EXP).summary
    sent, _ = flows_from(["x"] * 10)
    assert judge(sent, {}, EXP).summary == "no connection to 10.96.0.10:80 was translated"
    assert not judge([], {}, EXP).passed


def test_parse_conntrack() -> None:
    text = (
        "tcp      6 9 CLOSE src=10.244.1.5 dst=10.96.0.10 sport=41234 dport=80 "
        "src=10.244.1.3 dst=10.244.1.5 sport=8080 dport=41234 [ASSURED] mark=0 use=1\n"
        "tcp      6 9 CLOSE src=10.244.1.9 dst=10.96.0.10 sport=5 dport=80 "
        "src=10.244.1.3 dst=10.244.1.9 sport=8080 dport=5 mark=0 use=1\n"
    )
    assert parse_conntrack(text, "10.244.1.5") == {41234: Flow(41234, "10.244.1.3", 8080)}


# --- real packets against real (and mutated) rules ----------------------------------------------

MANIFESTS = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- {addresses: [10.244.1.2], nodeName: node1}
- {addresses: [10.244.1.3], nodeName: node1, conditions: {ready: READY_B}}
- {addresses: [10.244.1.4], nodeName: node1}
"""


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """node1 with pods a, b, c (backends listening on 8080) and d (the client), on cni0."""
    with Cluster("06-kube-proxy", nodes=1, pods_per_node=4, underlay=False) as c:
        listeners = []
        for pod in c.pods[:3]:
            with pod.ns.entered():
                s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((pod.ip, 8080))
            s.listen(4096)  # the kernel completes handshakes; nobody needs to accept
            listeners.append(s)
        try:
            yield c
        finally:
            for s in listeners:
                s.close()


def payload_for(cluster: Cluster, b_ready: bool = True) -> str:
    """Flush the node's tables and conntrack, sync a fresh proxier, return its payload."""
    node = cluster.node(1).ns
    for table in ("nat", "filter"):
        node.run(["iptables", "-t", table, "-F"])
        node.run(["iptables", "-t", table, "-X"])
    node.run(["conntrack", "-F"], check=False)
    objs = parse_manifests(MANIFESTS.replace("READY_B", str(b_ready).lower()), "web.yaml")
    proxier = Proxier(node, ProxierOptions(node_name="node1", cluster_cidr="10.244.0.0/16"))
    proxier.on_service_add(objs.services[0])
    proxier.on_endpoint_slice_add(objs.endpoint_slices[0])
    return proxier.sync()


def run_check(cluster: Cluster, not_ready: bool = False) -> str:
    ready = {p.name: p.ip for p in cluster.pods if p.name in "abc"}
    off = {"b": ready.pop("b")} if not_ready else {}
    exp = Expectation("10.96.0.10", 80, 8080, ready=ready, not_ready=off)
    d = cluster.pod("d")
    verdict = check_cluster_ip_distribution(d.ns, d.ip, cluster.node(1).ns, exp)
    return verdict.render()


def apply_mutant(cluster: Cluster, payload: str) -> None:
    cluster.node(1).ns.apply_iptables(payload, noflush=True)


def test_correct_rules_pass(cluster: Cluster) -> None:
    payload_for(cluster)
    report = run_check(cluster)
    assert report.startswith("[PASS] 10.96.0.10:80 spreads new connections evenly"), report


def test_mutant_every_rule_one_over_n(cluster: Cluster) -> None:
    payload = payload_for(cluster)
    apply_mutant(
        cluster, payload.replace("--probability 0.5000000000", "--probability 0.3333333333")
    )
    report = run_check(cluster)
    assert "[FAIL] traffic is skewed towards the last endpoint (c)" in report, report
    assert "1/3, 1/2, then no --probability" in report


def test_mutant_without_final_rule(cluster: Cluster) -> None:
    payload = payload_for(cluster)
    lines = payload.splitlines()
    last = next(i for i, line in enumerate(lines) if "-> 10.244.1.4:8080" in line)
    apply_mutant(cluster, "\n".join(lines[:last] + lines[last + 1 :]) + "\n")
    report = run_check(cluster)
    assert "were not translated" in report and "must have no --probability" in report, report


def test_mutant_missing_kube_services_jump(cluster: Cluster) -> None:
    payload = payload_for(cluster)
    lines = [
        line for line in payload.splitlines()
        if not (line.startswith("-A KUBE-SERVICES") and "cluster IP" in line)
    ]  # fmt: skip
    apply_mutant(cluster, "\n".join(lines) + "\n")
    report = run_check(cluster)
    assert "[FAIL] no connection to 10.96.0.10:80 was translated" in report, report


def test_mutant_wrong_target_port(cluster: Cluster) -> None:
    payload = payload_for(cluster)
    apply_mutant(cluster, payload.replace(":8080", ":80"))
    report = run_check(cluster)
    assert "[FAIL] connections were DNATed to the wrong port, not the pods' 8080" in report, report


def test_mutant_not_ready_pod_still_receiving(cluster: Cluster) -> None:
    payload_for(cluster, b_ready=True)  # rules from before pod b turned not ready
    report = run_check(cluster, not_ready=True)
    assert "[FAIL] a pod that is not ready still receives new connections" in report, report
    assert "pod b (10.244.1.3) got" in report


def test_resynced_rules_pass_after_not_ready(cluster: Cluster) -> None:
    payload = payload_for(cluster, b_ready=False)
    assert "10.244.1.3" not in payload
    report = run_check(cluster, not_ready=True)
    assert report.startswith("[PASS]"), report
