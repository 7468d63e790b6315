"""Every payload the proxier writes is accepted by the real iptables-restore, and does what
kube-proxy's rules do, inside a throwaway namespace (never the host)."""

from __future__ import annotations

import socket
import textwrap

import pytest

from course.kernel import Netns
from course.kubeproxy import Proxier, ProxierOptions, parse_manifests
from course.kubeproxy.proxier import get_chains_from_table
from tests.kubeproxy.test_kubeproxy_upstream import (
    OVERALL_MANIFESTS,
    THREE_ENDPOINTS,
    TWO_SERVICES,
    UPSTREAM_TEST_OPTIONS,
    _etp_local_case,
    slice_yaml,
    svc_yaml,
)

# nfacct objects do not exist in a fresh namespace (kube-proxy creates them over
# nfnetlink_acct and falls back to no nfacct matches when it cannot), so apply without.
KERNEL_OPTIONS = ProxierOptions(
    node_name="test-node", node_ip="192.168.0.2", cluster_cidr="10.0.0.0/8", nfacct=False
)


def load(proxier: Proxier, text: str) -> Proxier:
    objs = parse_manifests(text, "case.yaml")
    for svc in objs.services:
        proxier.on_service_add(svc)
    for es in objs.endpoint_slices:
        proxier.on_endpoint_slice_add(es)
    return proxier


def many_endpoints() -> str:
    eps = "".join(f"- addresses: [10.0.{i % 256}.{i // 256}]\n" for i in range(1002))
    return svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml("ns1", "svc1", eps)


CASES = {
    "overall": OVERALL_MANIFESTS,
    "two-services": TWO_SERVICES,
    "three-endpoints": THREE_ENDPOINTS,
    "etp-local-with-local": _etp_local_case(True),
    "etp-local-without-local": _etp_local_case(False),
    "large-cluster": many_endpoints(),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_payload_applies_with_real_iptables_restore(node_ns: Netns, case: str) -> None:
    proxier = load(Proxier(node_ns, KERNEL_OPTIONS), CASES[case])
    payload = proxier.sync()
    saved = node_ns.iptables_save("nat")
    declared = {line[1:].split()[0] for line in payload.split("*nat\n")[1].splitlines()
                if line.startswith(":")}  # fmt: skip
    assert declared <= get_chains_from_table(saved)
    nat_rules = [line for line in payload.split("*nat\n")[1].splitlines() if line.startswith("-A")]
    assert sum(line.startswith("-A KUBE-") for line in saved.splitlines()) == len(nat_rules)


def test_upstream_fixture_options_apply_too(node_ns: Netns) -> None:
    """The unit-test flavour (mark 0x4000, no --random-fully) is valid input as well."""
    opts = ProxierOptions(**{**UPSTREAM_TEST_OPTIONS.__dict__, "nfacct": False})
    load(Proxier(node_ns, opts), OVERALL_MANIFESTS).sync()
    # iptables-save prints `--or-mark M` back as `--set-xmark M/M`, as on a real node
    assert "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000" in node_ns.iptables_save("nat")


def test_node_prints_probabilities_with_eleven_digits(node_ns: Netns) -> None:
    load(Proxier(node_ns, KERNEL_OPTIONS), THREE_ENDPOINTS).sync()
    rules = node_ns.run(["iptables", "-t", "nat", "-S", "KUBE-SVC-XPGD46QRK7WJZT7O"]).stdout
    assert "--probability 0.33333333349" in rules
    assert "--probability 0.50000000000" in rules
    assert "-j MARK --set-xmark 0x4000/0x4000" in node_ns.iptables_save("nat")


def test_jump_rules_are_ensured_once(node_ns: Netns) -> None:
    proxier = load(Proxier(node_ns, KERNEL_OPTIONS), THREE_ENDPOINTS)
    proxier.sync()
    proxier.force_sync()  # ensures the jump rules again: they must not be duplicated
    nat = node_ns.iptables_save("nat").splitlines()
    jump = '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES'
    assert nat.count(jump) == 1
    assert nat.count('-A POSTROUTING -m comment --comment "kubernetes postrouting rules" '
                     "-j KUBE-POSTROUTING") == 1  # fmt: skip
    flt = node_ns.iptables_save("filter").splitlines()
    assert flt.count("-A INPUT -j KUBE-FIREWALL") == 1
    assert node_ns.sysctl("net.ipv4.conf.all.route_localnet") == "1"


def test_resync_after_deleting_a_service_removes_its_chains(node_ns: Netns) -> None:
    proxier = load(Proxier(node_ns, KERNEL_OPTIONS), TWO_SERVICES)
    proxier.sync()
    before = get_chains_from_table(node_ns.iptables_save("nat"))
    assert {"KUBE-SVC-2VJB64SDSIJUP5T6", "KUBE-SEP-UHEGFW77JX3KXTOV"} <= before
    proxier.on_service_delete(next(s for s in proxier.services.values() if s.name == "svc2"))
    payload = proxier.sync()
    assert "-X KUBE-SVC-2VJB64SDSIJUP5T6" in payload
    after = get_chains_from_table(node_ns.iptables_save("nat"))
    assert before - after == {"KUBE-SVC-2VJB64SDSIJUP5T6", "KUBE-SEP-UHEGFW77JX3KXTOV"}
    assert "ns2/svc2" not in node_ns.iptables_save()
    # and a resync with nothing changed writes no deletions at all
    assert "-X " not in proxier.sync()


def test_resync_leaves_foreign_chains_alone(node_ns: Netns) -> None:
    node_ns.apply_iptables("*nat\n:CNI-HOSTPORT-DNAT - [0:0]\n:KUBE-SOMETHING - [0:0]\nCOMMIT\n",
                           noflush=True)  # fmt: skip
    load(Proxier(node_ns, KERNEL_OPTIONS), THREE_ENDPOINTS).sync()
    chains = get_chains_from_table(node_ns.iptables_save("nat"))
    assert {"CNI-HOSTPORT-DNAT", "KUBE-SOMETHING"} <= chains


LOOPBACK_SERVICE = textwrap.dedent("""\
    apiVersion: v1
    kind: Service
    metadata: {name: web, namespace: default}
    spec:
      clusterIP: 10.96.0.10
      ports: [{name: http, port: 80, targetPort: 8080}]
    ---
    apiVersion: discovery.k8s.io/v1
    kind: EndpointSlice
    metadata: {name: web-1, namespace: default, labels: {kubernetes.io/service-name: web}}
    addressType: IPv4
    ports: [{name: http, port: 8080}]
    endpoints:
    - addresses: [127.0.0.2]
    - addresses: [127.0.0.3]
    - addresses: [127.0.0.4]
    """)


def _connect_many(ns: Netns, n: int) -> dict[str, int]:
    """Open n connections to the ClusterIP from inside the namespace; count per backend."""
    counts: dict[str, int] = {}
    with ns.entered():
        listeners = []
        for ip in ("127.0.0.2", "127.0.0.3", "127.0.0.4"):
            s = socket.socket()
            s.bind((ip, 8080))
            s.listen(n)
            listeners.append(s)
        clients = []
        for _ in range(n):
            c = socket.create_connection(("10.96.0.10", 80), timeout=2)
            clients.append(c)
        for s in listeners:
            s.setblocking(False)
            ip = s.getsockname()[0]
            while True:
                try:
                    conn, _ = s.accept()
                except BlockingIOError:
                    break
                conn.close()
                counts[ip] = counts.get(ip, 0) + 1
            s.close()
        for c in clients:
            c.close()
    return counts


def test_connections_to_the_cluster_ip_spread_over_endpoints(node_ns: Netns) -> None:
    """Real packets: 300 connections through the DNAT cascade reach all three backends."""
    node_ns.add_route("10.96.0.0/12", dev="lo")
    load(Proxier(node_ns, KERNEL_OPTIONS), LOOPBACK_SERVICE).sync()
    counts = _connect_many(node_ns, 300)
    assert sum(counts.values()) == 300
    # each backend expects 100; P(any < 50) is below 1e-8 for a fair 1/3 split
    assert set(counts) == {"127.0.0.2", "127.0.0.3", "127.0.0.4"}
    assert min(counts.values()) >= 50, counts


def test_session_affinity_keeps_one_client_on_one_endpoint(node_ns: Netns) -> None:
    """sessionAffinity ClientIP: `recent --set` in the KUBE-SEP chain remembers the client,
    `recent --rcheck` at the top of KUBE-SVC sends it back to the same endpoint."""
    node_ns.add_route("10.96.0.0/12", dev="lo")
    sticky = LOOPBACK_SERVICE.replace(
        "  clusterIP: 10.96.0.10\n",
        "  clusterIP: 10.96.0.10\n  sessionAffinity: ClientIP\n"
        "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}\n",
    )
    payload = load(Proxier(node_ns, KERNEL_OPTIONS), sticky).sync()
    assert "--rcheck --seconds 60 --reap" in payload
    counts = _connect_many(node_ns, 60)
    assert len(counts) == 1 and sum(counts.values()) == 60, counts
