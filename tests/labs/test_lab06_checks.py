"""Lab 06's checks against real namespaces and real rules: the reference kube-proxy passes, and
each known mistake is caught by the check meant for it, with the message meant for it.

The rules come from the course's own kube-proxy (`course.kubeproxy.Proxier`) for the lab's
manifests; a mutant is that payload edited the way a learner's `service_rules` would get it
wrong, applied with the real `iptables-restore` inside the lab's node namespace. No notebook,
no nbgrader.
"""

from __future__ import annotations

import dataclasses
import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from course.kernel import Netns
from course.kubeproxy import (
    EndpointSliceController,
    Proxier,
    ProxierOptions,
    load_manifests,
    parse_manifests,
)
from course.kubeproxy.proxier import ensure_jump_rules
from course.labs import topology
from course.topology import Cluster
from grader.kubeproxy_checks import busy_ports, open_connections
from grader.labs.lab06 import CLIENT_IP, LAB_ID, WEB, printed_probability
from grader.probes import run_in_netns
from grader.verdict import Verdict
from tests.nbharness import run_check
from tests.nbharness import verdict_caught as assert_caught

pytestmark = pytest.mark.slow
MANIFESTS = Path(__file__).resolve().parents[2] / "examples" / "manifests" / "06-web"
STICKY_YAML = """
apiVersion: v1
kind: Service
metadata: {name: web-sticky, namespace: default}
spec:
  clusterIP: 10.96.0.11
  selector: {app: web}
  sessionAffinity: ClientIP
  ports: [{name: http, protocol: TCP, port: 80, targetPort: http}]
"""
SERVER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', 8080)); s.listen(4096)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(sys.argv[1].encode()); c.close()\n"
)


@dataclasses.dataclass
class Lab06:
    """The notebook's cluster, with the reference kube-proxy standing in for the learner."""

    cluster: Cluster
    controller: EndpointSliceController

    @property
    def node(self) -> Netns:
        return self.cluster.node(1).ns

    def payload(self, *, b_ready: bool = True) -> str:
        """What kube-proxy writes for web and web-sticky, with pod b ready or not."""
        pod = self.controller.pods["default/b"]
        self.controller.on_pod_update(dataclasses.replace(pod, ready=b_ready))
        proxier = Proxier(None, ProxierOptions(node_name="node1"))
        for svc in self.controller.services.values():
            proxier.on_service_add(svc)
        for es in self.controller.endpoint_slices():
            proxier.on_endpoint_slice_add(es)
        return proxier.sync_proxy_rules()

    def apply(self, payload: str) -> None:
        """A clean nat table and conntrack, then the payload, as the learner's sync() would."""
        self.node.run(["iptables", "-t", "nat", "-F"])
        self.node.run(["iptables", "-t", "nat", "-X"])
        self.node.run(["conntrack", "-F"], check=False)
        ensure_jump_rules(self.node)
        self.node.apply_iptables(payload, noflush=True)

    def run(self, check_id: str, **answers: object) -> Verdict:
        return run_check(LAB_ID, self.cluster, check_id, **answers)


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab06]:
    objects = load_manifests([MANIFESTS])
    sticky = parse_manifests(STICKY_YAML, "web-sticky.yaml").services[0]
    controller = EndpointSliceController([objects.services[0], sticky], objects.pods)
    with Cluster(LAB_ID, **topology(LAB_ID)) as c:  # the notebook's cluster, router included
        for name in "abc":
            c.pod(name).exec([sys.executable, "-c", SERVER, name])
        yield Lab06(c, controller)


def without(payload: str, pattern: str) -> str:
    lines = payload.splitlines()
    kept = [ln for ln in lines if not re.search(pattern, ln)]
    assert len(kept) < len(lines), f"{pattern!r} matched nothing"
    return "\n".join(kept) + "\n"


# --- the right rules ---------------------------------------------------------------------------
def test_probabilities_as_iptables_prints_them() -> None:
    assert [printed_probability(n) for n in (2, 3, 5, 10)] == [
        "0.50000000000",
        "0.33333333349",
        "0.20000000019",
        "0.10000000009",
    ]


def test_reference_kube_proxy_passes_every_check(lab: Lab06) -> None:
    lab.apply(lab.payload())
    names = lab.run("ex3-names")
    assert names.passed and WEB.svc_chain in names.summary
    assert WEB.svc_chain == "KUBE-SVC-CDGGSHYLG3RE2FKL"
    cascade = lab.run("ex3-cascade")
    assert cascade.passed and "0.33333333349, 0.50000000000, (no --probability)" in cascade.summary
    spread = lab.run("ex3-spread")
    assert spread.passed and "spreads new connections evenly" in spread.summary
    lab.apply(lab.payload(b_ready=False))
    not_ready = lab.run("ex4-not-ready")
    assert not_ready.passed and "(10.244.1.3)" not in not_ready.observed
    sticky = lab.run("ex5-affinity")
    assert sticky.passed and "keeps pod d on one endpoint" in sticky.summary


def test_nothing_applied(lab: Lab06) -> None:
    lab.apply("*nat\nCOMMIT\n")
    assert_caught(lab.run("ex3-names"), "KUBE-SERVICES has no rule for 10.96.0.10:80")
    assert_caught(lab.run("ex3-cascade"), "KUBE-SERVICES has no rule for 10.96.0.10:80")
    assert_caught(lab.run("ex3-spread"), "no connection to 10.96.0.10:80 was translated")
    assert_caught(lab.run("ex5-affinity"), "KUBE-SERVICES has no rule for 10.96.0.11:80")
    lab.node.run(["iptables", "-t", "nat", "-F", "PREROUTING"])
    assert_caught(lab.run("ex3-names"), "PREROUTING does not jump to KUBE-SERVICES")


def test_syns_sent_before_the_rules_do_not_count_against_them(lab: Lab06) -> None:
    """The node routes an untranslated SYN out of its default route (to the router, which
    drops it), so its conntrack entry stays, unreplied, for two minutes. The check's own
    source ports (a seeded sample) must skip such ports: a SYN from one joins the old entry,
    skips the nat table and would count as "not translated" against right rules."""
    lab.apply("*nat\nCOMMIT\n")
    early = run_in_netns(lab.cluster.pod("d").ns, open_connections, WEB.cluster_ip, WEB.port,
                         5, 0.3, 0, timeout=10.0)  # fmt: skip
    assert busy_ports(lab.node, WEB.cluster_ip, WEB.port, CLIENT_IP) == sorted(early)
    lab.node.apply_iptables(lab.payload(), noflush=True)  # no conntrack -F: the entries stay
    spread = lab.run("ex3-spread")
    assert spread.passed, spread.render()


# --- the mutants of the issue, each with its own message ---------------------------------------
def test_every_rule_one_over_n(lab: Lab06) -> None:
    payload = lab.payload()
    lab.apply(payload.replace("--probability 0.5000000000", "--probability 0.3333333333"))
    assert_caught(
        lab.run("ex3-cascade"),
        "does not hold kube-proxy's probability cascade",
        "0.33333333349, 0.33333333349, (no --probability)",
        "every rule uses 1/3",
    )
    assert_caught(
        lab.run("ex3-spread"), "traffic is skewed towards the last endpoint (c)", "1/3, 1/2"
    )
    assert lab.run("ex3-names").passed  # the names are right; only the numbers are wrong


def test_cascade_without_its_final_rule(lab: Lab06) -> None:
    payload = lab.payload()
    lab.apply(without(payload, rf"^-A {WEB.svc_chain} .*-> 10\.244\.1\.4:8080"))
    assert_caught(
        lab.run("ex3-cascade"), "has no final unconditional rule", "0.33333333349, 0.50000000000"
    )
    assert_caught(lab.run("ex3-spread"), "were not translated", "must have no --probability")


def test_missing_kube_services_jump(lab: Lab06) -> None:
    payload = lab.payload()
    lab.apply(without(payload, r"^-A KUBE-SERVICES .*10\.96\.0\.10"))
    assert_caught(lab.run("ex3-names"), "KUBE-SERVICES has no rule for 10.96.0.10:80")
    assert_caught(lab.run("ex3-spread"), "no connection to 10.96.0.10:80 was translated")


def test_dnat_to_the_wrong_target_port(lab: Lab06) -> None:
    lab.apply(lab.payload().replace(":8080", ":80"))
    assert_caught(
        lab.run("ex3-names"),
        "does not DNAT to 10.244.1.2:8080: wrong target port",
        "DNATs to ['10.244.1.2:80']",
    )
    assert_caught(
        lab.run("ex3-spread"), "DNATed to the wrong port, not the pods' 8080", "port 80 ("
    )


def test_not_ready_pod_still_receiving(lab: Lab06) -> None:
    lab.payload(b_ready=False)  # the slice changed...
    lab.apply(lab.payload(b_ready=True))  # ...but the node still has the old rules
    lab.controller.on_pod_update(dataclasses.replace(lab.controller.pods["default/b"], ready=False))
    assert_caught(
        lab.run("ex4-not-ready"),
        "a pod that is not ready still receives new connections",
        "pod b (10.244.1.3) got",
    )


# --- more mistakes a learner makes --------------------------------------------------------------
def test_chain_name_hashed_without_the_protocol(lab: Lab06) -> None:
    import base64
    import hashlib

    wrong = "KUBE-SVC-" + base64.b32encode(hashlib.sha256(b"default/web:http").digest()).decode()
    lab.apply(lab.payload().replace(WEB.svc_chain, wrong[:25]))
    assert_caught(lab.run("ex3-names"), "is not named the kube-proxy way", wrong[:25])


def test_affinity_without_rcheck_rules(lab: Lab06) -> None:
    payload = lab.payload(b_ready=False)
    lab.apply(without(payload, r"--rcheck"))
    assert_caught(lab.run("ex5-affinity"), "does not look up the client's last endpoint first")


def test_affinity_without_set(lab: Lab06) -> None:
    payload = lab.payload(b_ready=False)
    lab.apply(re.sub(r" -m recent --name KUBE-SEP-\w+ --set", "", payload))
    assert_caught(lab.run("ex5-affinity"), "does not remember the client")


def test_affinity_remembering_the_wrong_address(lab: Lab06) -> None:
    """--set --rdest records the ClusterIP: the kernel state looks right, the wire does not."""
    payload = lab.payload(b_ready=False)
    lab.apply(payload.replace(" --set", " --set --rdest"))
    assert_caught(
        lab.run("ex5-affinity"), "connections from one client went to 2 pods", "a (10.244.1.2)"
    )
