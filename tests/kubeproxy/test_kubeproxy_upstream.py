"""The payload equals what kube-proxy writes for the same Services and EndpointSlices.

Inputs and expected texts follow kube-proxy's own unit tests (pkg/proxy/iptables/
proxier_test.go at commit 531be812: TestOverallIPTablesRules, TestSyncProxyRulesRepeated,
the large-cluster and affinity cases) with their fixture conventions: pod CIDR 10.0.0.0/8,
node "test-node" at 192.168.0.2, mark 0x4000, nfacct counters present, no --random-fully.
The cases are written here as YAML manifests, the way a learner would write them.
"""

from __future__ import annotations

import textwrap

from course.kubeproxy import Proxier, ProxierOptions, parse_manifests
from tests.kubeproxy.kubeproxy_text import check_rule_jumps, sort_iptables_rules

UPSTREAM_TEST_OPTIONS = ProxierOptions(
    node_name="test-node",
    node_ip="192.168.0.2",
    cluster_cidr="10.0.0.0/8",
    masquerade_mark="0x4000",
    random_fully=False,
    nfacct=True,
)


def svc_yaml(ns: str, name: str, cluster_ip: str, extra: str = "", port: str = "") -> str:
    port = port or "- {name: p80, port: 80, protocol: TCP}"
    return (
        textwrap.dedent(f"""\
        ---
        apiVersion: v1
        kind: Service
        metadata: {{namespace: {ns}, name: {name}}}
        spec:
          clusterIP: {cluster_ip}
          ports:
          {port}
        """)
        + extra
    )


def slice_yaml(ns: str, name: str, endpoints: str, port: str = "") -> str:
    port = port or "- {name: p80, port: 80, protocol: TCP}"
    return textwrap.dedent(f"""\
        ---
        apiVersion: discovery.k8s.io/v1
        kind: EndpointSlice
        metadata:
          namespace: {ns}
          name: {name}-1
          labels: {{kubernetes.io/service-name: {name}}}
        addressType: IPv4
        ports:
        {port}
        endpoints:
        """) + textwrap.indent(textwrap.dedent(endpoints), "")


def proxier_for(text: str, options: ProxierOptions = UPSTREAM_TEST_OPTIONS) -> Proxier:
    objs = parse_manifests(text, "case.yaml")
    proxier = Proxier(options=options)
    for svc in objs.services:
        proxier.on_service_add(svc)
    for es in objs.endpoint_slices:
        proxier.on_endpoint_slice_add(es)
    return proxier


def assert_rules_equal(expected: str, payload: str) -> None:
    expected = "".join(line.strip() + "\n" for line in expected.strip().splitlines())
    assert sort_iptables_rules(payload) == expected
    assert check_rule_jumps(payload) == []


OVERALL_MANIFESTS = (
    svc_yaml("ns1", "svc1", "172.30.0.41")
    + svc_yaml(
        "ns2", "svc2", "172.30.0.42",
        textwrap.dedent("""\
          type: LoadBalancer
          externalTrafficPolicy: Local
          externalIPs: [192.168.99.22]
          healthCheckNodePort: 30000
        status: {loadBalancer: {ingress: [{ip: 1.2.3.4}]}}
        """),
        port="- {name: p80, port: 80, protocol: TCP, nodePort: 3001}",
    )
    + svc_yaml(
        "ns3", "svc3", "172.30.0.43", "  type: NodePort\n",
        port="- {name: p80, port: 80, protocol: TCP, nodePort: 3003}",
    )
    + svc_yaml(
        "ns4", "svc4", "172.30.0.44",
        "  type: NodePort\n  externalIPs: [192.168.99.33]\n",
        port="- {name: p80, port: 80, protocol: TCP, targetPort: 80}",
    )
    + svc_yaml(
        "ns5", "svc5", "172.30.0.45",
        textwrap.dedent("""\
          type: LoadBalancer
          externalTrafficPolicy: Cluster
          healthCheckNodePort: 30000
          loadBalancerSourceRanges: [" 203.0.113.0/25"]
          sessionAffinity: ClientIP
          sessionAffinityConfig: {clientIP: {timeoutSeconds: 10800}}
        status: {loadBalancer: {ingress: [{ip: 5.6.7.8}]}}
        """),
        port="- {name: p80, port: 80, protocol: TCP, nodePort: 3002}",
    )
    + svc_yaml("ns6", "svc6", "172.30.0.46", "  type: ClusterIP\n")
    + slice_yaml("ns1", "svc1", "- addresses: [10.180.0.1]\n")
    + slice_yaml("ns2", "svc2", "- addresses: [10.180.0.2]\n")
    + slice_yaml("ns3", "svc3", "- addresses: [10.180.0.3]\n")
    + slice_yaml(
        "ns4", "svc4", "- addresses: [10.180.0.4]\n- addresses: [10.180.0.5]\n  nodeName: test-node\n"
    )
    + slice_yaml("ns5", "svc5", "- addresses: [10.180.0.3]\n")
)  # fmt: skip

OVERALL_EXPECTED = """
    *filter
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXTERNAL-SERVICES - [0:0]
    :KUBE-FIREWALL - [0:0]
    :KUBE-FORWARD - [0:0]
    :KUBE-PROXY-FIREWALL - [0:0]
    -A KUBE-NODEPORTS -m comment --comment "ns2/svc2:p80 health check node port" -m tcp -p tcp --dport 30000 -j ACCEPT
    -A KUBE-SERVICES -m comment --comment "ns6/svc6:p80 has no endpoints" -m tcp -p tcp -d 172.30.0.46 --dport 80 -j REJECT
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j DROP
    -A KUBE-EXTERNAL-SERVICES -m comment --comment "ns2/svc2:p80 has no local endpoints" -m addrtype --dst-type LOCAL -m tcp -p tcp --dport 3001 -j DROP
    -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    -A KUBE-PROXY-FIREWALL -m comment --comment "ns5/svc5:p80 traffic not accepted by KUBE-FW-NUKIZ6OKUXPJNT4C" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j DROP
    COMMIT
    *nat
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXT-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-EXT-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-EXT-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-EXT-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-FW-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-MARK-MASQ - [0:0]
    :KUBE-POSTROUTING - [0:0]
    :KUBE-SEP-C6EBXVWJJZMIWKLZ - [0:0]
    :KUBE-SEP-I77PXRDZVX7PMWMN - [0:0]
    :KUBE-SEP-OYPFS5VJICHGATKP - [0:0]
    :KUBE-SEP-RS4RBKLTHTF2IUXJ - [0:0]
    :KUBE-SEP-SXIVWICOYRO3J4NJ - [0:0]
    :KUBE-SEP-UKSFD7AGPMPPLUHC - [0:0]
    :KUBE-SVC-4SW47YFZTEDKD3PK - [0:0]
    :KUBE-SVC-GNZBNJ2PO5MGZ6GT - [0:0]
    :KUBE-SVC-NUKIZ6OKUXPJNT4C - [0:0]
    :KUBE-SVC-X27LE4BHSL4DOUIK - [0:0]
    :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
    -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3001 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-NODEPORTS -m comment --comment ns2/svc2:p80 -m tcp -p tcp --dport 3001 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3003 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-X27LE4BHSL4DOUIK
    -A KUBE-NODEPORTS -m comment --comment ns3/svc3:p80 -m tcp -p tcp --dport 3003 -j KUBE-EXT-X27LE4BHSL4DOUIK
    -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp -d 127.0.0.0/8 --dport 3002 -m nfacct --nfacct-name localhost_nps_accepted_pkts -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-NODEPORTS -m comment --comment ns5/svc5:p80 -m tcp -p tcp --dport 3002 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 external IP" -m tcp -p tcp -d 192.168.99.22 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns2/svc2:p80 loadbalancer IP" -m tcp -p tcp -d 1.2.3.4 --dport 80 -j KUBE-EXT-GNZBNJ2PO5MGZ6GT
    -A KUBE-SERVICES -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-SERVICES -m comment --comment "ns4/svc4:p80 external IP" -m tcp -p tcp -d 192.168.99.33 --dport 80 -j KUBE-EXT-4SW47YFZTEDKD3PK
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "ns5/svc5:p80 loadbalancer IP" -m tcp -p tcp -d 5.6.7.8 --dport 80 -j KUBE-FW-NUKIZ6OKUXPJNT4C
    -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
    -A KUBE-EXT-4SW47YFZTEDKD3PK -m comment --comment "masquerade traffic for ns4/svc4:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-4SW47YFZTEDKD3PK -j KUBE-SVC-4SW47YFZTEDKD3PK
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "pod traffic for ns2/svc2:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "masquerade LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ
    -A KUBE-EXT-GNZBNJ2PO5MGZ6GT -m comment --comment "route LOCAL traffic for ns2/svc2:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-GNZBNJ2PO5MGZ6GT
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -m comment --comment "masquerade traffic for ns5/svc5:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-NUKIZ6OKUXPJNT4C -j KUBE-SVC-NUKIZ6OKUXPJNT4C
    -A KUBE-EXT-X27LE4BHSL4DOUIK -m comment --comment "masquerade traffic for ns3/svc3:p80 external destinations" -j KUBE-MARK-MASQ
    -A KUBE-EXT-X27LE4BHSL4DOUIK -j KUBE-SVC-X27LE4BHSL4DOUIK
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 loadbalancer IP" -s 203.0.113.0/25 -j KUBE-EXT-NUKIZ6OKUXPJNT4C
    -A KUBE-FW-NUKIZ6OKUXPJNT4C -m comment --comment "other traffic to ns5/svc5:p80 will be dropped by KUBE-PROXY-FIREWALL"
    -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
    -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
    -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
    -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -s 10.180.0.5 -j KUBE-MARK-MASQ
    -A KUBE-SEP-C6EBXVWJJZMIWKLZ -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.5:80
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-I77PXRDZVX7PMWMN -m comment --comment ns5/svc5:p80 -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --set -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -s 10.180.0.3 -j KUBE-MARK-MASQ
    -A KUBE-SEP-OYPFS5VJICHGATKP -m comment --comment ns3/svc3:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.3:80
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -s 10.180.0.2 -j KUBE-MARK-MASQ
    -A KUBE-SEP-RS4RBKLTHTF2IUXJ -m comment --comment ns2/svc2:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.2:80
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -s 10.180.0.1 -j KUBE-MARK-MASQ
    -A KUBE-SEP-SXIVWICOYRO3J4NJ -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.1:80
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -s 10.180.0.4 -j KUBE-MARK-MASQ
    -A KUBE-SEP-UKSFD7AGPMPPLUHC -m comment --comment ns4/svc4:p80 -m tcp -p tcp -j DNAT --to-destination 10.180.0.4:80
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 cluster IP" -m tcp -p tcp -d 172.30.0.44 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.4:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-UKSFD7AGPMPPLUHC
    -A KUBE-SVC-4SW47YFZTEDKD3PK -m comment --comment "ns4/svc4:p80 -> 10.180.0.5:80" -j KUBE-SEP-C6EBXVWJJZMIWKLZ
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-GNZBNJ2PO5MGZ6GT -m comment --comment "ns2/svc2:p80 -> 10.180.0.2:80" -j KUBE-SEP-RS4RBKLTHTF2IUXJ
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 cluster IP" -m tcp -p tcp -d 172.30.0.45 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -m recent --name KUBE-SEP-I77PXRDZVX7PMWMN --rcheck --seconds 10800 --reap -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SVC-NUKIZ6OKUXPJNT4C -m comment --comment "ns5/svc5:p80 -> 10.180.0.3:80" -j KUBE-SEP-I77PXRDZVX7PMWMN
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 cluster IP" -m tcp -p tcp -d 172.30.0.43 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-X27LE4BHSL4DOUIK -m comment --comment "ns3/svc3:p80 -> 10.180.0.3:80" -j KUBE-SEP-OYPFS5VJICHGATKP
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
    -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -j KUBE-SEP-SXIVWICOYRO3J4NJ
    COMMIT
"""


def test_overall_iptables_rules() -> None:
    """TestOverallIPTablesRules: ClusterIP, LB eTP=Local, NodePort, externalIP, LB+FW+affinity,
    and a Service without endpoints, all in one payload."""
    payload = proxier_for(OVERALL_MANIFESTS).sync_proxy_rules()
    assert_rules_equal(OVERALL_EXPECTED, payload)


def test_payload_layout_matches_sync_proxy_rules_order() -> None:
    """Unsorted, the payload has syncProxyRules' own layout: filter first, the static chains
    declared first, KUBE-POSTROUTING/KUBE-MARK-MASQ rules first, the nodeports jump last."""
    payload = proxier_for(OVERALL_MANIFESTS).sync_proxy_rules()
    lines = payload.splitlines()
    assert lines[0] == "*filter"
    assert lines[1:7] == [
        ":KUBE-SERVICES - [0:0]", ":KUBE-EXTERNAL-SERVICES - [0:0]", ":KUBE-FORWARD - [0:0]",
        ":KUBE-NODEPORTS - [0:0]", ":KUBE-PROXY-FIREWALL - [0:0]", ":KUBE-FIREWALL - [0:0]",
    ]  # fmt: skip
    nat = lines[lines.index("*nat") :]
    assert nat[1:5] == [
        ":KUBE-SERVICES - [0:0]", ":KUBE-NODEPORTS - [0:0]",
        ":KUBE-POSTROUTING - [0:0]", ":KUBE-MARK-MASQ - [0:0]",
    ]  # fmt: skip
    first_rule = next(i for i, line in enumerate(nat) if line.startswith("-A"))
    assert nat[first_rule].startswith("-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000")
    assert "must be the last rule" in nat[-2] and nat[-1] == "COMMIT"
    assert payload.endswith("COMMIT\n")


TWO_SERVICES = (
    svc_yaml("ns1", "svc1", "172.30.0.41")
    + svc_yaml("ns2", "svc2", "172.30.0.42", port="- {name: p8080, port: 8080, protocol: TCP}")
    + slice_yaml("ns1", "svc1", "- addresses: [10.0.1.1]\n")
    + slice_yaml(
        "ns2",
        "svc2",
        "- addresses: [10.0.2.1]\n",
        port="- {name: p8080, port: 8080, protocol: TCP}",
    )
)

STATIC_FILTER = """
    *filter
    :KUBE-NODEPORTS - [0:0]
    :KUBE-SERVICES - [0:0]
    :KUBE-EXTERNAL-SERVICES - [0:0]
    :KUBE-FIREWALL - [0:0]
    :KUBE-FORWARD - [0:0]
    :KUBE-PROXY-FIREWALL - [0:0]
    -A KUBE-FIREWALL -m comment --comment "block incoming localnet connections" -d 127.0.0.0/8 ! -s 127.0.0.0/8 -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
    -A KUBE-FORWARD -m conntrack --ctstate INVALID -m nfacct --nfacct-name ct_state_invalid_dropped_pkts -j DROP
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding rules" -m mark --mark 0x4000/0x4000 -j ACCEPT
    -A KUBE-FORWARD -m comment --comment "kubernetes forwarding conntrack rule" -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
    COMMIT"""


def test_sync_proxy_rules_repeated_first_sync() -> None:
    """TestSyncProxyRulesRepeated, initial state: two ClusterIP services, one endpoint each."""
    payload = proxier_for(TWO_SERVICES).sync_proxy_rules()
    assert_rules_equal(
        STATIC_FILTER
        + """
        *nat
        :KUBE-NODEPORTS - [0:0]
        :KUBE-SERVICES - [0:0]
        :KUBE-MARK-MASQ - [0:0]
        :KUBE-POSTROUTING - [0:0]
        :KUBE-SEP-SNQ3ZNILQDEJNDQO - [0:0]
        :KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]
        :KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]
        :KUBE-SVC-XPGD46QRK7WJZT7O - [0:0]
        -A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 -j KUBE-SVC-XPGD46QRK7WJZT7O
        -A KUBE-SERVICES -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 -j KUBE-SVC-2VJB64SDSIJUP5T6
        -A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
        -A KUBE-MARK-MASQ -j MARK --or-mark 0x4000
        -A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
        -A KUBE-POSTROUTING -j MARK --xor-mark 0x4000
        -A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE
        -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -s 10.0.1.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-SNQ3ZNILQDEJNDQO -m comment --comment ns1/svc1:p80 -m tcp -p tcp -j DNAT --to-destination 10.0.1.1:80
        -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -s 10.0.2.1 -j KUBE-MARK-MASQ
        -A KUBE-SEP-UHEGFW77JX3KXTOV -m comment --comment ns2/svc2:p8080 -m tcp -p tcp -j DNAT --to-destination 10.0.2.1:8080
        -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 cluster IP" -m tcp -p tcp -d 172.30.0.42 --dport 8080 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-2VJB64SDSIJUP5T6 -m comment --comment "ns2/svc2:p8080 -> 10.0.2.1:8080" -j KUBE-SEP-UHEGFW77JX3KXTOV
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ
        -A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.0.1.1:80" -j KUBE-SEP-SNQ3ZNILQDEJNDQO
        COMMIT
        """,
        payload,
    )


def test_deleted_service_chains_are_declared_and_removed() -> None:
    """After ns2/svc2 is deleted, its chains are declared (which flushes them) and `-X`ed in
    the same payload, as in TestSyncProxyRulesRepeated's "Delete a service" step."""
    proxier = proxier_for(TWO_SERVICES)
    first = proxier.sync_proxy_rules()
    existing = {line[1:].split()[0] for line in first.splitlines() if line.startswith(":")}
    svc2 = next(s for s in proxier.services.values() if s.name == "svc2")
    proxier.on_service_delete(svc2)
    payload = proxier.sync_proxy_rules(existing)
    nat = sort_iptables_rules(payload).split("*nat\n")[1]
    assert ":KUBE-SEP-UHEGFW77JX3KXTOV - [0:0]" in nat
    assert ":KUBE-SVC-2VJB64SDSIJUP5T6 - [0:0]" in nat
    assert nat.endswith("-X KUBE-SEP-UHEGFW77JX3KXTOV\n-X KUBE-SVC-2VJB64SDSIJUP5T6\nCOMMIT\n")
    assert "-A KUBE-SVC-2VJB64SDSIJUP5T6" not in payload
    assert "ns2/svc2" not in payload
    # the slice alone (no Service) never produces rules; chains not ours are never deleted
    assert "-X KUBE-SERVICES" not in payload and "-X KUBE-MARK-MASQ" not in payload


def test_endpoint_change_replaces_sep_chain() -> None:
    """An endpoint moving from 10.0.1.1 to 10.0.1.2 gets a new KUBE-SEP; the old one is -X'd."""
    proxier = proxier_for(TWO_SERVICES)
    first = proxier.sync_proxy_rules()
    existing = {line[1:].split()[0] for line in first.splitlines() if line.startswith(":")}
    moved = parse_manifests(slice_yaml("ns1", "svc1", "- addresses: [10.0.1.2]\n"), "x.yaml")
    proxier.on_endpoint_slice_update(moved.endpoint_slices[0])
    payload = proxier.sync_proxy_rules(existing)
    assert "-X KUBE-SEP-SNQ3ZNILQDEJNDQO" in payload
    assert "--to-destination 10.0.1.2:80" in payload


THREE_ENDPOINTS = svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml(
    "ns1",
    "svc1",
    "- addresses: [10.180.0.3]\n- addresses: [10.180.0.1]\n- addresses: [10.180.0.2]\n",
)


def test_three_endpoint_cascade() -> None:
    """1/3, then 1/2 of the rest, then everything left; endpoints in string order."""
    payload = proxier_for(THREE_ENDPOINTS).sync_proxy_rules()
    svc_rules = [
        line
        for line in payload.splitlines()
        if '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 ->' in line
    ]
    assert svc_rules == [
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.1:80" -m statistic --mode random --probability 0.3333333333 -j KUBE-SEP-SXIVWICOYRO3J4NJ',
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -m statistic --mode random --probability 0.5000000000 -j KUBE-SEP-LXVODXWDISEETFEF',
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.3:80" -j KUBE-SEP-ICDUIKC33SFI6ZPR',
    ]  # fmt: skip


def test_endpoint_order_is_a_string_sort() -> None:
    """10.180.0.10 sorts before 10.180.0.2 (byEndpoint compares "ip:port" strings)."""
    text = svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml(
        "ns1", "svc1", "- addresses: [10.180.0.2]\n- addresses: [10.180.0.10]\n"
    )
    payload = proxier_for(text).sync_proxy_rules()
    arrows = [line.split('"')[1] for line in payload.splitlines() if " -> " in line]
    assert arrows == ["ns1/svc1:p80 -> 10.180.0.10:80", "ns1/svc1:p80 -> 10.180.0.2:80"]


def test_large_cluster_mode_drops_sep_comments() -> None:
    """TestSyncProxyRulesLargeClusterMode: over 1000 endpoints, SEP rules lose comments."""

    def endpoints(prefix: str) -> str:
        return "".join(f"- addresses: [{prefix}.{i % 256}.{i // 256}]\n" for i in range(501))

    text = (
        svc_yaml("ns1", "svc1", "172.30.0.41")
        + svc_yaml("ns2", "svc2", "172.30.0.42", port="- {name: p8080, port: 8080, protocol: TCP}")
        + slice_yaml("ns1", "svc1", endpoints("10.0"))
        + slice_yaml("ns2", "svc2", endpoints("10.1"), port="- {name: p8080, port: 8080, protocol: TCP}")
    )  # fmt: skip
    payload = proxier_for(text).sync_proxy_rules()
    assert (
        "-A KUBE-SEP-DKGQUZGBKLTPAR56 -m tcp -p tcp -j DNAT --to-destination 10.0.0.0:80"
        in payload.splitlines()
    )
    dnat = [line for line in payload.splitlines() if "-j DNAT" in line]
    assert len(dnat) == 1002 and not any("--comment" in line for line in dnat)


def test_large_cluster_threshold_is_strict() -> None:
    """Exactly 1000 endpoints (499 + 501) is not yet large-cluster mode: comments stay."""

    def endpoints(prefix: str, n: int) -> str:
        return "".join(f"- addresses: [{prefix}.{i % 256}.{i // 256}]\n" for i in range(n))

    text = (
        svc_yaml("ns1", "svc1", "172.30.0.41")
        + svc_yaml("ns2", "svc2", "172.30.0.42")
        + slice_yaml("ns1", "svc1", endpoints("10.0", 499))
        + slice_yaml("ns2", "svc2", endpoints("10.1", 501))
    )
    payload = proxier_for(text).sync_proxy_rules()
    dnat = [line for line in payload.splitlines() if "-j DNAT" in line]
    assert len(dnat) == 1000 and all("--comment" in line for line in dnat)


def _etp_local_case(local_ep: bool) -> str:
    node = "  nodeName: test-node\n" if local_ep else ""
    return svc_yaml(
        "ns1", "svc1", "172.30.0.41",
        "  type: NodePort\n  externalTrafficPolicy: Local\n",
        port="- {name: p80, port: 80, protocol: TCP, nodePort: 30080}",
    ) + slice_yaml(
        "ns1", "svc1",
        "- addresses: [10.180.0.1]\n- addresses: [10.180.0.2]\n" + node
        + "- addresses: [10.180.0.3]\n",
    )  # fmt: skip


def test_external_traffic_policy_local_with_local_endpoint() -> None:
    """eTP=Local: KUBE-EXT short-circuits pods and the node to KUBE-SVC, everyone else goes
    to KUBE-SVL, which only knows this node's endpoint (10.180.0.2)."""
    payload = proxier_for(_etp_local_case(True)).sync_proxy_rules()
    lines = payload.splitlines()
    ext = [line for line in lines if line.startswith("-A KUBE-EXT-XPGD46QRK7WJZT7O")]
    assert ext == [
        '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "pod traffic for ns1/svc1:p80 external destinations" -s 10.0.0.0/8 -j KUBE-SVC-XPGD46QRK7WJZT7O',
        '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "masquerade LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-MARK-MASQ',
        '-A KUBE-EXT-XPGD46QRK7WJZT7O -m comment --comment "route LOCAL traffic for ns1/svc1:p80 external destinations" -m addrtype --src-type LOCAL -j KUBE-SVC-XPGD46QRK7WJZT7O',
        "-A KUBE-EXT-XPGD46QRK7WJZT7O -j KUBE-SVL-XPGD46QRK7WJZT7O",
    ]  # fmt: skip
    svl = [line for line in lines if line.startswith("-A KUBE-SVL-")]
    assert svl == [
        '-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 -> 10.180.0.2:80" -j KUBE-SEP-LXVODXWDISEETFEF'
    ]  # fmt: skip
    assert sum("-A KUBE-SVC-XPGD46QRK7WJZT7O" in line and "->" in line for line in lines) == 3
    assert "has no local endpoints" not in payload
    assert check_rule_jumps(payload) == []


def test_external_traffic_policy_local_without_local_endpoint() -> None:
    """No local endpoint: no KUBE-SVL, KUBE-EXT ends without a jump, filter DROPs the rest."""
    payload = proxier_for(_etp_local_case(False)).sync_proxy_rules()
    assert "KUBE-SVL-" not in payload
    assert not any(
        line.startswith("-A KUBE-EXT-XPGD46QRK7WJZT7O -j ") for line in payload.splitlines()
    )
    assert (
        '-A KUBE-EXTERNAL-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" '
        "-m addrtype --dst-type LOCAL -m tcp -p tcp --dport 30080 -j DROP"
    ) in payload.splitlines()
    assert check_rule_jumps(payload) == []


def test_internal_traffic_policy_local() -> None:
    """iTP=Local: the ClusterIP goes to KUBE-SVL (local endpoints only); without any local
    endpoint the ClusterIP is DROPped in filter (not REJECTed: endpoints exist elsewhere)."""

    def case(local: bool) -> str:
        node = "  nodeName: test-node\n" if local else "  nodeName: other\n"
        return svc_yaml("ns1", "svc1", "172.30.0.41", "  internalTrafficPolicy: Local\n") + (
            slice_yaml("ns1", "svc1", "- addresses: [10.180.0.1]\n" + node)
        )

    with_local = proxier_for(case(True)).sync_proxy_rules()
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j KUBE-SVL-XPGD46QRK7WJZT7O"
    ) in with_local.splitlines()
    assert (
        '-A KUBE-SVL-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 ! -s 10.0.0.0/8 -j KUBE-MARK-MASQ"
    ) in with_local.splitlines()
    assert "KUBE-SVC-" not in with_local
    without = proxier_for(case(False)).sync_proxy_rules()
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1:p80 has no local endpoints" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j DROP"
    ) in without.splitlines()
    assert "KUBE-SEP-" not in without


def test_terminating_endpoints_are_a_fallback_only() -> None:
    """Serving+terminating endpoints are used only when no endpoint is ready."""
    both = svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml(
        "ns1", "svc1",
        "- addresses: [10.180.0.1]\n"
        "- addresses: [10.180.0.2]\n  conditions: {ready: false, serving: true, terminating: true}\n",
    )  # fmt: skip
    payload = proxier_for(both).sync_proxy_rules()
    assert "10.180.0.1:80" in payload and "10.180.0.2" not in payload
    only_terminating = svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml(
        "ns1", "svc1",
        "- addresses: [10.180.0.2]\n  conditions: {ready: false, serving: true, terminating: true}\n"
        "- addresses: [10.180.0.3]\n  conditions: {ready: false, serving: false, terminating: true}\n",
    )  # fmt: skip
    payload = proxier_for(only_terminating).sync_proxy_rules()
    assert "--to-destination 10.180.0.2:80" in payload and "10.180.0.3" not in payload


def test_not_ready_only_means_no_endpoints() -> None:
    text = svc_yaml("ns1", "svc1", "172.30.0.41") + slice_yaml(
        "ns1", "svc1", "- addresses: [10.180.0.1]\n  conditions: {ready: false}\n"
    )
    payload = proxier_for(text).sync_proxy_rules()
    assert '"ns1/svc1:p80 has no endpoints"' in payload and "KUBE-SVC-" not in payload


def test_masquerade_all_and_no_local_detector() -> None:
    """--masquerade-all drops the `! -s POD`; with no cluster CIDR there is no masq rule."""
    opts = ProxierOptions(masquerade_mark="0x4000", random_fully=False, masquerade_all=True)
    payload = proxier_for(THREE_ENDPOINTS, opts).sync_proxy_rules()
    assert (
        '-A KUBE-SVC-XPGD46QRK7WJZT7O -m comment --comment "ns1/svc1:p80 cluster IP" -m tcp -p tcp '
        "-d 172.30.0.41 --dport 80 -j KUBE-MARK-MASQ"
    ) in payload.splitlines()
    plain = proxier_for(THREE_ENDPOINTS, ProxierOptions()).sync_proxy_rules()
    assert '"ns1/svc1:p80 cluster IP" -m tcp -p tcp -d 172.30.0.41 --dport 80 ! -s' not in plain
    assert not any(
        line.startswith("-A KUBE-SVC-") and "KUBE-MARK-MASQ" in line for line in plain.splitlines()
    )


def test_real_node_defaults() -> None:
    """Real kube-proxy defaults: mark 0x00004000 (%#08x), --random-fully, no nfacct."""
    payload = proxier_for(THREE_ENDPOINTS, ProxierOptions()).sync_proxy_rules()
    assert "-A KUBE-MARK-MASQ -j MARK --or-mark 0x00004000" in payload
    assert (
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully"
    ) in payload
    assert "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP" in payload
    assert "nfacct" not in payload
    no_lnp = ProxierOptions(localhost_nodeports=False)
    payload = proxier_for(THREE_ENDPOINTS, no_lnp).sync_proxy_rules()
    assert "KUBE-FIREWALL" not in payload
    assert "-m addrtype --dst-type LOCAL ! -d 127.0.0.0/8 -j KUBE-NODEPORTS" in payload


def test_headless_and_external_name_get_no_rules() -> None:
    text = (
        svc_yaml("ns1", "headless", "None")
        + "---\napiVersion: v1\nkind: Service\nmetadata: {name: ext, namespace: ns1}\n"
        "spec: {type: ExternalName, externalName: example.com}\n"
        + slice_yaml("ns1", "headless", "- addresses: [10.180.0.1]\n")
    )
    payload = proxier_for(text).sync_proxy_rules()
    assert "headless" not in payload and "ext" not in payload.replace("EXTERNAL", "")


def test_udp_and_unnamed_port() -> None:
    """An unnamed port hashes `ns/name` + protocol (kube-dns style names checked elsewhere)."""
    text = svc_yaml("ns1", "svc1", "172.30.0.41", port="- {port: 53, protocol: UDP}") + slice_yaml(
        "ns1", "svc1", "- addresses: [10.180.0.1]\n", port="- {port: 53, protocol: UDP}"
    )
    payload = proxier_for(text).sync_proxy_rules()
    assert (
        '-A KUBE-SERVICES -m comment --comment "ns1/svc1 cluster IP" -m udp -p udp '
        "-d 172.30.0.41 --dport 53 -j KUBE-SVC-"
    ) in payload
    assert "-m udp -p udp -j DNAT --to-destination 10.180.0.1:53" in payload
