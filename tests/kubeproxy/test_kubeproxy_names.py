"""Chain names and probability strings, against names seen in kube-proxy's tests and on
real clusters, and the probability strings of upstream TestComputeProbability."""

from __future__ import annotations

import itertools

import pytest

from course.kubeproxy.proxier import (
    compute_probability,
    is_service_chain_name,
    service_external_chain_name,
    service_firewall_chain_name,
    service_port_endpoint_chain_name,
    service_port_policy_cluster_chain,
    service_port_policy_local_chain_name,
)
from course.kubeproxy.serviceport import ServicePortName


@pytest.mark.parametrize(
    ("spn", "proto", "chain"),
    [
        ("default/kubernetes:https", "tcp", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
        ("kube-system/kube-dns:dns", "udp", "KUBE-SVC-TCOU7JCQXEZGVUNU"),
        ("kube-system/kube-dns:dns-tcp", "tcp", "KUBE-SVC-ERIFXISQEP7F7OF4"),
        ("kube-system/kube-dns:metrics", "tcp", "KUBE-SVC-JD5MR3NA4I4DYORP"),
        ("default/nginx", "tcp", "KUBE-SVC-2CMXP7HKUVJN7L6M"),
        ("ns1/svc1:p80", "tcp", "KUBE-SVC-XPGD46QRK7WJZT7O"),
        ("ns2/svc2:p80", "tcp", "KUBE-SVC-GNZBNJ2PO5MGZ6GT"),
        ("ns2/svc2:p8080", "tcp", "KUBE-SVC-2VJB64SDSIJUP5T6"),
    ],
)
def test_cluster_chain_names_seen_on_real_clusters(spn: str, proto: str, chain: str) -> None:
    assert service_port_policy_cluster_chain(spn, proto) == chain


def test_same_hash_for_all_service_level_chains() -> None:
    args = ("ns1/svc1:p80", "tcp")
    assert service_port_policy_local_chain_name(*args) == "KUBE-SVL-XPGD46QRK7WJZT7O"
    assert service_external_chain_name(*args) == "KUBE-EXT-XPGD46QRK7WJZT7O"
    assert service_firewall_chain_name(*args) == "KUBE-FW-XPGD46QRK7WJZT7O"


@pytest.mark.parametrize(
    ("spn", "endpoint", "chain"),
    [
        ("ns1/svc1:p80", "10.180.0.1:80", "KUBE-SEP-SXIVWICOYRO3J4NJ"),
        ("ns1/svc1:p80", "10.180.0.2:80", "KUBE-SEP-LXVODXWDISEETFEF"),
        ("ns1/svc1:p80", "10.180.0.3:80", "KUBE-SEP-ICDUIKC33SFI6ZPR"),
        ("ns4/svc4:p80", "10.180.0.4:80", "KUBE-SEP-UKSFD7AGPMPPLUHC"),
        ("ns4/svc4:p80", "10.180.0.5:80", "KUBE-SEP-C6EBXVWJJZMIWKLZ"),
        ("ns1/svc1:p80", "10.0.0.0:80", "KUBE-SEP-DKGQUZGBKLTPAR56"),
    ],
)
def test_endpoint_chain_names(spn: str, endpoint: str, chain: str) -> None:
    assert service_port_endpoint_chain_name(spn, "tcp", endpoint) == chain


def test_names_fit_iptables_limit_and_differ_by_protocol() -> None:
    tcp = service_port_policy_cluster_chain("kube-system/kube-dns:dns", "tcp")
    udp = service_port_policy_cluster_chain("kube-system/kube-dns:dns", "udp")
    assert tcp != udp
    assert len(service_firewall_chain_name("a" * 300, "sctp")) <= 28
    assert len(service_port_endpoint_chain_name("a/b:c", "tcp", "10.0.0.1:1")) <= 28


def test_service_port_name_string() -> None:
    assert (
        str(ServicePortName("default", "kubernetes", "https", "TCP")) == "default/kubernetes:https"
    )
    assert str(ServicePortName("default", "nginx", "", "TCP")) == "default/nginx"


def test_is_service_chain_name() -> None:
    for chain in ("KUBE-SVC-X", "KUBE-SVL-X", "KUBE-EXT-X", "KUBE-FW-X", "KUBE-SEP-X"):
        assert is_service_chain_name(chain)
    for chain in ("KUBE-SERVICES", "KUBE-MARK-MASQ", "KUBE-NODEPORTS", "CNI-FORWARD"):
        assert not is_service_chain_name(chain)


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (1, "1.0000000000"),
        (2, "0.5000000000"),
        (3, "0.3333333333"),
        (10, "0.1000000000"),
        (100, "0.0100000000"),
        (1000, "0.0010000000"),
        (10000, "0.0001000000"),
        (100000, "0.0000100000"),
        (100001, "0.0000099999"),
    ],
)
def test_compute_probability(n: int, text: str) -> None:
    assert compute_probability(n) == text


def test_probabilities_strictly_increase_as_n_falls() -> None:
    values = [float(compute_probability(n)) for n in range(100000, 1, -1)]
    assert all(a < b for a, b in itertools.pairwise(values))


def _iptables_round_trip(text: str) -> str:
    """libxt_statistic: lround(p * 2^31) stored; iptables-save prints u32 / 2^31 as %.11f."""
    stored = int(float(text) * 0x80000000 + 0.5)
    return f"{stored / 0x80000000:.11f}"


@pytest.mark.parametrize(
    ("n", "printed"),
    [(2, "0.50000000000"), (3, "0.33333333349"), (4, "0.25000000000"), (5, "0.20000000019")],
)
def test_why_a_node_shows_eleven_digits(n: int, printed: str) -> None:
    assert _iptables_round_trip(compute_probability(n)) == printed
