"""grader.probes: real packets from inside namespaces, and observations that explain."""

from __future__ import annotations

import sys
import time

import pytest

from course.topology import Cluster
from grader.probes import ProbeError, ping, run_in_netns, sniff_while, tcp_connect, tcp_syn, udp

SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('{ip}', {port})); s.listen()\n"
    "while True:\n"
    "    c, _ = s.accept(); c.sendall(b'hello from pod'); c.close()\n"
)


@pytest.fixture(scope="module")
def cluster():
    with Cluster("t-probes", nodes=1, pods_per_node=2) as c:
        yield c


def _serve(pod, ip: str, port: int) -> None:
    pod.exec([sys.executable, "-c", SERVER.format(ip=ip, port=port)])
    deadline = time.time() + 5
    while time.time() < deadline:
        if f":{port}" in pod.ns.run(["ss", "-ltn"]).stdout:
            return
        time.sleep(0.05)
    raise AssertionError("server did not start")


def test_ping_reports_reply_ttl_and_macs(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    obs = ping(a.ns, b.ip, ttl=9)
    assert obs.ok and obs.iface == "eth0"
    assert obs.reply.kind == "ICMP echo-reply" and obs.reply.ttl == 64
    assert obs.reply.dst_mac == a.ns.link("eth0")["mac"]
    assert "ttl 9" in obs.sent and "Got back ICMP echo-reply" in obs.describe()


def test_unanswered_arp_is_named_in_the_feedback(cluster):
    obs = ping(cluster.pod("a").ns, "10.244.1.200", timeout=0.5)
    assert not obs.ok
    assert obs.arp_unanswered() == ["10.244.1.200"]
    assert "who has 10.244.1.200?" in obs.describe()


def test_no_route_is_reported_as_such(cluster):
    ns = cluster.netns("noroute")
    obs = ping(ns, "10.244.1.2", timeout=0.5)
    assert not obs.ok and "no route" in (obs.error or "")
    assert "did not send it" in obs.describe()


def test_tcp_connect_and_syn_against_a_listener_and_a_closed_port(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    _serve(b, "0.0.0.0", 8080)
    ok = tcp_connect(a.ns, b.ip, 8080)
    assert ok.ok and ok.data == b"hello from pod", ok.describe()
    refused = tcp_connect(a.ns, b.ip, 8081)
    assert not refused.ok and "RST" in refused.describe()
    syn = tcp_syn(a.ns, b.ip, 8080)
    assert syn.reply.kind == "TCP SA"
    closed = tcp_syn(a.ns, b.ip, 8081)
    assert closed.reply.kind == "TCP RA"


def test_udp_to_a_closed_port_gets_port_unreachable(cluster):
    obs = udp(cluster.pod("a").ns, cluster.pod("b").ip, 5353)
    assert obs.reply.kind == "ICMP dest-unreach" and "port-unreachable" in obs.reply.detail


def test_sniff_on_one_namespace_while_sending_from_another(cluster):
    a, b = cluster.pod("a"), cluster.pod("b")
    host_if = b.host_ifname
    obs, frames = sniff_while(cluster.node(1).ns, host_if, lambda: ping(a.ns, b.ip), bpf="icmp")
    assert obs.ok
    kinds = [f.kind for f in frames]
    assert "ICMP echo-request" in kinds and "ICMP echo-reply" in kinds


def test_probe_in_missing_namespace_and_overrunning_probe(cluster):
    with pytest.raises(ProbeError, match="does not exist"):
        ping("knl-nope-nothing", "10.0.0.1")
    with pytest.raises(ProbeError, match="ran over"):
        run_in_netns(cluster.pod("a").ns, time.sleep, 5, timeout=0.5)
