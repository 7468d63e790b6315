"""The NodePort path across two nodes, proven with tagged probes captured where they arrive.

One lab cluster (course.nodeport: node1 with pods a and dns, node2 with pods b and c, a
router and the outside client 203.0.113.10), kube-proxy's rules from course.kubeproxy on
both nodes. Each test changes one thing, sends tagged connections and reads:
the source address captured at the receiving pod, what came back to the client, and
node1's conntrack. Every test starts from kube-proxy's full rule set.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from course import nodeport
from course.dns import query_from
from course.kubeproxy.cluster import ClusterKubeProxy
from course.nodeport import NodePortLab
from course.topology import Cluster
from grader.nodeport_checks import Place, Probe, conntrack_entries, entry_for, probes_from

pytestmark = pytest.mark.slow
CLIENT_IP = "203.0.113.10"
NODE1, NODE2 = "192.168.1.11", "192.168.1.12"
PODS = {"a": "10.244.1.2", "b": "10.244.2.2", "c": "10.244.2.3"}
WEB_LOCAL = """
apiVersion: v1
kind: Service
metadata: {name: web-local, namespace: default}
spec:
  type: NodePort
  clusterIP: 10.96.0.21
  selector: {app: web}
  externalTrafficPolicy: Local
  ports: [{name: http, protocol: TCP, port: 80, targetPort: http, nodePort: 30081}]
---
apiVersion: v1
kind: Service
metadata: {name: web-headless, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, protocol: TCP, port: 8080, targetPort: http}]
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[NodePortLab]:
    with Cluster(nodeport.LAB_ID, **nodeport.TOPOLOGY) as c:
        lab = nodeport.build(c)
        lab.apply(WEB_LOCAL, "web-local.yaml")
        yield lab
        lab.dns.stop()


@pytest.fixture(autouse=True)
def fresh(lab: NodePortLab) -> NodePortLab:
    """kube-proxy's rules, hairpin on, pod a outside `web`, an empty conntrack table."""
    c = lab.cluster
    kp = lab.kube_proxy
    kp.update_pod(dataclasses.replace(kp.pod("a"), labels={"pod": "a"}, ready=True))
    for name in ("b", "c"):
        kp.update_pod(dataclasses.replace(kp.pod(name), ready=True))
    lab.sync()
    for pod in c.pods:
        assert pod.host_ifname is not None
        pod.node.ns.bridge_port(pod.host_ifname, hairpin=True)
    for node in c.nodes:
        node.ns.sysctl("net.bridge.bridge-nf-call-iptables", 1)
        node.ns.run(["conntrack", "-F"], check=False)
    return lab


def watch(lab: NodePortLab, *pods: str) -> list[Place]:
    c = lab.cluster
    assert c.client is not None
    return [Place("client", c.client.ns)] + [Place(f"pod {p}", c.pod(p).ns) for p in pods]


def from_client(lab: NodePortLab, node_ip: str, port: int, count: int = 3) -> list[Probe]:
    assert lab.cluster.client is not None
    return probes_from(lab.cluster.client.ns, node_ip, port, watch(lab, "a", "b", "c"), count)


# --- NodePort with masquerade: the pod sees node1 --------------------------------------------
def test_pod_on_node2_sees_node1_and_conntrack_holds_both_translations(lab: NodePortLab) -> None:
    probes = from_client(lab, NODE1, 30080)
    for p in probes:
        arrived = p.tagged_arrival()
        assert p.connected and arrived is not None, p.segments
        assert arrived.place in ("pod b", "pod c")
        assert arrived.src == NODE1 and p.answer.seen == NODE1  # wire and server agree
    entries = conntrack_entries(lab.cluster.node(1).ns, "--orig-port-dst", "30080")
    for p in probes:
        e = entry_for(entries, CLIENT_IP, p.sport)
        assert e is not None and e.dnat and e.snat, entries
        assert e.reply_src in (PODS["b"], PODS["c"]) and e.reply_dst == NODE1


def test_without_mark_masq_the_reply_bypasses_node1(lab: NodePortLab) -> None:
    node1 = lab.cluster.node(1).ns
    ext = next(
        line.split()[1]
        for line in node1.iptables_save("nat").splitlines()
        if line.startswith("-A KUBE-EXT-") and "-j KUBE-MARK-MASQ" in line
    )
    node1.run(["iptables", "-t", "nat", "-D", ext, "1"])  # the MARK-MASQ jump comes first
    probes = from_client(lab, NODE1, 30080, count=2)
    for p in probes:
        assert not p.connected
        syns = p.syn_arrivals()
        assert syns and all(s.src == CLIENT_IP for s in syns)  # the pod saw the client
        strangers = {s.src for s in p.replies_at_client()}
        assert strangers and strangers <= {PODS["b"], PODS["c"]}  # SYN-ACK from a pod IP


def test_masquerade_chains_left_to_the_learner_start_empty(lab: NodePortLab) -> None:
    """ProxierOptions(masquerade_rules=False): KUBE-MARK-MASQ and KUBE-POSTROUTING stay empty."""
    kp = ClusterKubeProxy(lab.cluster, masquerade_rules=False)
    kp.controller = lab.kube_proxy.controller
    node1 = lab.cluster.node(1).ns
    for chain in ("KUBE-MARK-MASQ", "KUBE-POSTROUTING"):
        node1.run(["iptables", "-t", "nat", "-F", chain])
    payloads = kp.sync()
    assert ":KUBE-POSTROUTING" not in payloads["node1"]
    assert "-A KUBE-EXT-" in payloads["node1"]
    rules = node1.run(["iptables", "-t", "nat", "-S"]).stdout
    assert "-A KUBE-MARK-MASQ" not in rules and "-A KUBE-POSTROUTING" not in rules
    (p,) = from_client(lab, NODE1, 30080, count=1)
    assert not p.connected and {s.src for s in p.replies_at_client()} <= {PODS["b"], PODS["c"]}


# --- externalTrafficPolicy: Local ---------------------------------------------------------------
def test_local_policy_keeps_the_client_address_on_a_node_with_endpoints(lab: NodePortLab) -> None:
    for p in from_client(lab, NODE2, 30081):
        arrived = p.tagged_arrival()
        assert p.connected and arrived is not None
        assert arrived.src == CLIENT_IP and p.answer.seen == CLIENT_IP


def test_local_policy_drops_on_a_node_without_endpoints(lab: NodePortLab) -> None:
    payload = lab.kube_proxy.payload("node1")
    assert '"default/web-local:http has no local endpoints"' in payload
    for p in from_client(lab, NODE1, 30081, count=2):
        assert not p.connected
        assert not [s for s in p.segments if s.place != "client"]  # no pod saw anything
        assert not p.replies_at_client()


def test_local_policy_with_a_local_endpoint_on_both_nodes(lab: NodePortLab) -> None:
    kp = lab.kube_proxy
    kp.update_pod(dataclasses.replace(kp.pod("a"), labels={"pod": "a", "app": "web"}))
    lab.sync()
    for p in from_client(lab, NODE1, 30081):
        arrived = p.tagged_arrival()
        assert arrived is not None and arrived.place == "pod a" and arrived.src == CLIENT_IP


# --- hairpin: the three failure modes of the kernel notes, and the working case ---------------
def hairpin(lab: NodePortLab) -> Probe:
    a = lab.cluster.pod("a")
    places = [Place("pod a", a.ns)]
    (p,) = probes_from(a.ns, nodeport.SELF_CLUSTER_IP, 80, places, count=1, timeout=1.0)
    return p


def set_hairpin(lab: NodePortLab, on: bool) -> None:
    a = lab.cluster.pod("a")
    assert a.host_ifname is not None
    a.node.ns.bridge_port(a.host_ifname, hairpin=on)


def test_hairpin_works_and_the_pod_sees_the_bridge_address(lab: NodePortLab) -> None:
    p = hairpin(lab)
    arrived = p.tagged_arrival()
    assert p.connected and arrived is not None and arrived.src == "10.244.1.1"


def test_hairpin_mode_off_the_syn_never_comes_back(lab: NodePortLab) -> None:
    set_hairpin(lab, False)
    p = hairpin(lab)
    assert not p.connected
    incoming = [s for s in p.segments if s.dst == PODS["a"] and s.dport == 8080]
    assert not incoming  # the bridge would not send the frame out of the port it came in on


def test_hairpin_without_source_masquerade_answers_itself(lab: NodePortLab) -> None:
    node1 = lab.cluster.node(1).ns
    sep = next(
        line.split()[1]
        for line in node1.iptables_save("nat").splitlines()
        if f"-s {PODS['a']}/32" in line and line.endswith("-j KUBE-MARK-MASQ")
    )
    node1.run(["iptables", "-t", "nat", "-D", sep, "1"])  # the hairpin rule comes first
    p = hairpin(lab)
    assert not p.connected
    syns = [s for s in p.segments if s.flags == "S" and s.dport == 8080]
    assert syns and all(s.src == PODS["a"] for s in syns)  # it arrived, from itself
    entries = conntrack_entries(node1, "--orig-dst", nodeport.SELF_CLUSTER_IP)
    assert entries and all("UNREPLIED" in e.line for e in entries)


def test_hairpin_routed_when_bridge_netfilter_is_off(lab: NodePortLab) -> None:
    set_hairpin(lab, False)
    lab.cluster.node(1).ns.sysctl("net.bridge.bridge-nf-call-iptables", 0)
    p = hairpin(lab)
    assert p.connected and p.answer.seen == "10.244.1.1"


# --- headless: DNS answers with pods, no kube-proxy rule, no NAT ------------------------------
def test_headless_service_has_no_rules_and_dns_answers_with_ready_pods(lab: NodePortLab) -> None:
    node1 = lab.cluster.node(1).ns
    nat = node1.iptables_save("nat")
    assert "web-headless" not in nat
    assert "web-headless" not in lab.kube_proxy.payload("node2")
    b = lab.cluster.pod("b")
    name = "web-headless.default.svc.cluster.local"
    assert sorted(query_from(b.ns, name)) == [PODS["b"], PODS["c"]]
    assert query_from(b.ns, "web.default.svc.cluster.local") == ["10.96.0.20"]
    assert query_from(b.ns, "nothing.default.svc.cluster.local") == []
    kp = lab.kube_proxy
    kp.update_pod(dataclasses.replace(kp.pod("c"), ready=False))
    lab.sync()
    assert query_from(b.ns, name) == [PODS["b"]]


def test_headless_client_connects_to_a_pod_without_nat(lab: NodePortLab) -> None:
    a = lab.cluster.pod("a")
    (p,) = probes_from(a.ns, PODS["c"], 8080, [Place("pod c", lab.cluster.pod("c").ns)], 1)
    assert p.connected and p.answer.seen == PODS["a"]
    entries = conntrack_entries(lab.cluster.node(1).ns, "--orig-dst", PODS["c"])
    e = entry_for(entries, PODS["a"], p.sport)
    assert e is not None and not e.dnat and not e.snat
