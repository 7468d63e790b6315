"""course.capture: tcpdump inside lab namespaces, read back as rows and a pcap."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest

from course.capture import CaptureError, capture, capture_while
from course.topology import Cluster


@pytest.fixture(scope="module")
def two_pods(tmp_path_factory):
    """pod-a 10.244.1.2 <-> pod-b 10.244.1.3 on one veth; pcaps into a temporary folder."""
    os.environ["K8SNET_CAPTURE_DIR"] = str(tmp_path_factory.mktemp("captures"))
    with Cluster("t-capture", nodes=1, pods_per_node=0, pod_network=None, underlay=False) as c:
        a, b = c.netns("pod-a"), c.netns("pod-b")
        a.add_veth("eth0", b, "eth0")
        a.add_address("eth0", "10.244.1.2/24")
        b.add_address("eth0", "10.244.1.3/24")
        a.up("eth0")
        b.up("eth0")
        yield c
    os.environ.pop("K8SNET_CAPTURE_DIR", None)


def _ping(c: Cluster, src: str, dst: str) -> None:
    c.namespaces[src].run(["ping", "-c1", "-W1", dst])


def test_ping_between_two_namespaces_shows_request_and_reply(two_pods):
    with capture("pod-a", "eth0", filter="icmp", cluster=two_pods) as cap:
        _ping(two_pods, "pod-a", "10.244.1.3")
    rows = [(r.where, r.src, r.dst, r.proto, r.summary.split(" id")[0]) for r in cap.rows]
    assert rows == [
        ("pod-a/eth0", "10.244.1.2", "10.244.1.3", "ICMP", "echo-request"),
        ("pod-a/eth0", "10.244.1.3", "10.244.1.2", "ICMP", "echo-reply"),
    ]
    assert [r.direction for r in cap.rows] == ["out", "in"]
    assert cap.rows[0].ttl == 64 and 0 <= cap.rows[0].t < 2
    text = str(cap)
    assert "10.244.1.2 -> 10.244.1.3" in text and "echo-request" in text
    html = cap._repr_html_()
    assert "<table>" in html and "echo-reply" in html and str(cap.pcap) in html


def test_pcap_opens_with_scapy(two_pods):
    from scapy.layers.inet import ICMP
    from scapy.utils import rdpcap

    with capture("pod-b", "eth0", filter="icmp", cluster=two_pods) as cap:
        _ping(two_pods, "pod-a", "10.244.1.3")
    packets = rdpcap(str(cap.pcap))
    assert [p[ICMP].type for p in packets] == [8, 0]


def test_both_ends_of_a_cable_merge_by_time(two_pods):
    points = [("pod-a", "eth0"), ("pod-b", "eth0")]
    _, cap = capture_while(
        points, None, lambda: _ping(two_pods, "pod-a", "10.244.1.3"), cluster=two_pods
    )
    icmp = [(r.where, r.summary.split(" id")[0]) for r in cap.rows if r.proto == "ICMP"]
    assert icmp == [
        ("pod-a/eth0", "echo-request"),
        ("pod-b/eth0", "echo-request"),
        ("pod-b/eth0", "echo-reply"),
        ("pod-a/eth0", "echo-reply"),
    ]
    times = [r.t for r in cap.rows]
    assert times == sorted(times)
    assert cap.pcap is not None and cap.pcap.name.endswith("merged.pcap")


def test_ipv6_noise_is_hidden_unless_asked(two_pods):
    ns = two_pods.namespaces["pod-a"]
    send = ["ping", "-6", "-c1", "-W1", "ff02::1%eth0"]  # IPv6 multicast: what noise looks like
    with capture("pod-a", "eth0", cluster=two_pods) as quiet:
        ns.run(send, check=False)
    with capture("pod-a", "eth0", cluster=two_pods, noise=True) as loud:
        ns.run(send, check=False)
    assert not [r for r in quiet.rows if r.dst.startswith("ff02")]
    assert [r for r in loud.rows if r.dst.startswith("ff02")]


def test_tcpdump_stops_even_when_the_body_raises(two_pods):
    with pytest.raises(KeyboardInterrupt), capture("pod-a", "eth0", cluster=two_pods) as cap:
        raise KeyboardInterrupt
    assert all(tap.proc is not None and tap.proc.poll() is not None for tap in cap.taps)
    left = subprocess.run(["pgrep", "-f", str(cap.taps[0].path)], capture_output=True, text=True)
    assert not left.stdout.strip()


def test_bad_interface_is_a_readable_error(two_pods):
    with pytest.raises(CaptureError, match="nosuch"):
        capture("pod-a", "nosuch0", cluster=two_pods)
    with pytest.raises(CaptureError, match="roles of the current run"):
        capture("pod-zz", "eth0", cluster=two_pods)


@pytest.fixture(scope="module")
def vxlan_pair(tmp_path_factory):
    """Two 'nodes' on an underlay link, each with a flannel.1 VTEP and a pod address behind it."""
    os.environ["K8SNET_CAPTURE_DIR"] = str(tmp_path_factory.mktemp("vxcaptures"))
    with Cluster("t-capture-vx", nodes=0, pod_network=None, underlay=False) as c:
        n1, n2 = c.netns("node1"), c.netns("node2")
        n1.add_veth("eth0", n2, "eth0")
        for ns, ip, pod, peer_pod in (
            (n1, "192.168.1.11", "10.244.1.0", "10.244.2.0"),
            (n2, "192.168.1.12", "10.244.2.0", "10.244.1.0"),
        ):
            ns.add_address("eth0", f"{ip}/24")
            ns.up("eth0")
            ns.add_vxlan("flannel.1", 1, ip, "eth0", mtu=1450)
            ns.add_address("flannel.1", f"{pod}/32")
            ns.up("flannel.1")
            ns.add_route(f"{peer_pod}/24", via=peer_pod, dev="flannel.1", onlink=True)
        for ns, other in ((n1, n2), (n2, n1)):
            mac = other.link("flannel.1")["mac"]
            peer_pod = other.addresses("flannel.1")[0].split("/")[0]
            ns.add_neighbour(peer_pod, mac, "flannel.1")
            ns.add_fdb(mac, "flannel.1", dst=other.addresses("eth0")[0].split("/")[0])
        yield c
    os.environ.pop("K8SNET_CAPTURE_DIR", None)


def test_vxlan_rows_show_outer_and_inner_headers(vxlan_pair):
    node1 = vxlan_pair.namespaces["node1"]
    with capture("node1", "eth0", filter="udp port 8472", cluster=vxlan_pair) as cap:
        node1.run(["ping", "-c1", "-W1", "10.244.2.0"])
    request = cap.rows[0]
    assert (request.src, request.dst, request.proto) == ("10.244.1.0", "10.244.2.0", "ICMP")
    assert request.vni == 1 and "echo-request" in request.summary
    assert "192.168.1.11 -> 192.168.1.12 UDP" in request.outer and "VNI 1" in request.outer
    assert "> 8472 VXLAN" in request.outer  # the outer UDP ports, not the inner ICMP's type
    assert request.direction == "out"  # read from the outer MACs: node1's eth0 sent it
    assert "VNI 1" in str(cap) and "outer" in cap._repr_html_()


def test_no_tcpdump_left_running():
    out = subprocess.run(["pgrep", "-a", "tcpdump"], capture_output=True, text=True).stdout
    mine = [line for line in out.splitlines() if "t-capture" in line or "/captures" in line]
    for line in mine:  # pragma: no cover - only on failure, clean up before failing
        os.kill(int(line.split()[0]), signal.SIGKILL)
    assert not mine
