"""The tracer on kube-proxy's own rules (lab 06's cluster): "why did my connection go there?"

Lab 06's node (pods a, b, c serving their name on 8080, pod d the client, all on cni0) with
the course's kube-proxy (`course.kubeproxy`) writing a ClusterIP Service for a, b and c. A
traced connection must show the walk kube-proxy built, jump by jump: nat PREROUTING (or
OUTPUT, for the node itself) -> KUBE-SERVICES -> KUBE-SVC-... -> the KUBE-SEP-... whose DNAT
names the pod that really answered. Labs 06 and 07 and `k8snet trace` rely on exactly that.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest

from course.kubeproxy.cluster import ClusterKubeProxy, pods_of
from course.kubeproxy.objects import Service, ServicePort
from course.labs import topology
from course.netfilter import Step, Trace
from course.topology import Cluster
from grader.tracing import Probe, trace_probes

pytestmark = pytest.mark.slow
LAB = "06-kube-proxy"
VIP, PORT, TARGET = "10.96.0.10", 80, 8080
BACKENDS = ("a", "b", "c")
SERVER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {TARGET})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster(LAB, **topology(LAB)) as c:
        for name in BACKENDS:
            c.pod(name).exec([sys.executable, "-c", SERVER, name])
        web = Service("default", "web", cluster_ip=VIP, selector={"app": "web"},
                      ports=(ServicePort("http", "TCP", PORT, TARGET),))  # fmt: skip
        kp = ClusterKubeProxy(c, [web], pods_of(c, {n: {"app": "web"} for n in BACKENDS}))
        kp.sync()
        # Lab 06's node has no default route; a node process needs *some* route to the
        # ClusterIP to get past the output route lookup, which comes before nat OUTPUT.
        c.node(1).ns.run(["ip", "route", "add", "10.96.0.0/12", "dev", "cni0"])
        yield c


def _nat_walk(t: Trace) -> list[Step]:
    return [s for s in t.packets[0].steps if s.table == "nat"] if t.packets else []


def _dnat_target(step: Step) -> str:
    m = re.search(r"--to-destination (\S+)", step.rule) or re.search(r"dnat to (\S+)", step.nft)
    assert m, step
    return m.group(1)


@pytest.mark.parametrize("sender", ["node1-d", "node1"])
def test_the_trace_names_the_endpoint_that_answered(cluster: Cluster, sender: str) -> None:
    """From a pod (nat PREROUTING) and from the node itself (nat OUTPUT), three connections
    each: every trace walks KUBE-SERVICES -> KUBE-SVC -> KUBE-SEP, and the KUBE-SEP's DNAT
    is the pod whose name came back."""
    node = cluster.node(1)
    ns = cluster.namespaces[sender]
    hook = "PREROUTING" if sender != "node1" else "OUTPUT"
    traces = trace_probes(node.ns, [Probe(ns, VIP, PORT, connect=True) for _ in range(3)])
    ips = {cluster.pod(n).ip: n for n in BACKENDS}
    for t in traces:
        answered = t.result.data.decode()
        assert answered in BACKENDS, t.result.describe()
        walk = _nat_walk(t)
        chains = [s.chain for s in walk]
        assert chains[0] == hook and walk[0].verdict == "jump KUBE-SERVICES", t.render()
        service = [
            s for s in walk if s.chain.startswith(("KUBE-SERVICES", "KUBE-SVC-", "KUBE-SEP-"))
        ]
        assert [s.chain[:8] for s in service] == ["KUBE-SER", "KUBE-SVC", "KUBE-SEP"], t.render()
        assert {s.hook for s in service} == {hook}, t.render()
        svc, picked, sep = service
        assert svc.verdict == f"jump {picked.chain}" and picked.verdict == f"jump {sep.chain}"
        # every step is named by its iptables rule and position, kube-proxy's comments too
        assert all(s.rule.startswith(f"-A {s.chain} ") and s.position for s in service), t.render()
        assert "default/web:http" in picked.rule and "-j DNAT" in sep.rule
        ip, _, port = _dnat_target(sep).partition(":")
        assert (ips.get(ip), port) == (answered, str(TARGET)), t.render()
