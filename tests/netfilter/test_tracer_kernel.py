"""The tracer on real namespaces: it agrees with the model on all three paths, shows NAT
only on a connection's first packet, and leaves nothing behind.

One cluster for the module: node1 (pod a on cni0) and node2 (pod b), routed host-gw style
over the underlay. Every trace is taken in node1: pod a -> pod b is forwarded by node1,
pod a -> node1's address is delivered to a process on node1, node1 -> pod b is sent by a
process on node1. Every table has every built-in chain and conntrack is on, so the model's
answer is the whole answer.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from course.netfilter import (
    Match,
    declare_builtin_chains,
    enable_conntrack,
    path,
    trace,
    trace_tables,
)
from course.topology import Cluster
from grader.tracing import trace_probe

pytestmark = pytest.mark.slow
PORT = 8080
VIP = "10.96.0.50"
SERVER = (
    "import socket\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    f"s.bind(('0.0.0.0', {PORT})); s.listen(64)\n"
    "while True:\n"
    "    c, _ = s.accept(); c.recv(100); c.sendall(b'hello'); c.close()\n"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with Cluster("t-netfilter", nodes=2, pods_per_node=1) as c:
        node = c.node(1).ns
        for ns in (c.pod("a").ns, c.pod("b").ns, node):
            ns.popen([sys.executable, "-c", SERVER])
        declare_builtin_chains(node)
        enable_conntrack(node)
        yield c


def _ruleset(cluster: Cluster) -> str:
    return cluster.node(1).ns.run(["nft", "list", "ruleset"]).stdout


@pytest.mark.parametrize("kind", ["forward", "local-in", "local-out"])
def test_tracer_agrees_with_the_model(cluster: Cluster, kind: str) -> None:
    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    sender, dst = {
        "forward": (a.ns, b.ip),
        "local-in": (a.ns, node.ip),
        "local-out": (node.ns, b.ip),
    }[kind]
    t = trace_probe(node.ns, sender, dst, PORT)
    print(t.render())
    first = t.packets[0]
    assert first.kind() == kind
    assert first.chains() == path(kind), t.render()
    # the reply (SYN-ACK) is a later packet of the connection: no nat chain at all
    reply = t.packets[1]
    assert reply.first.src == dst and reply.first.flags == "SYN,ACK"
    assert not reply.nat_steps(), t.render()


def test_dnat_applies_to_the_first_packet_only(cluster: Cluster) -> None:
    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    rule = ["-d", VIP, "-p", "tcp", "--dport", "80", "-j", "DNAT",
            "--to-destination", f"{b.ip}:{PORT}"]  # fmt: skip
    node.ns.run(["iptables", "-t", "nat", "-A", "PREROUTING", *rule])
    try:
        t = trace_probe(node.ns, a.ns, VIP, 80, connect=True, payload=b"hi")
    finally:
        node.ns.run(["iptables", "-t", "nat", "-D", "PREROUTING", *rule])
    print(t.render())
    assert t.result.data == b"hello", t.result.describe()
    syn, *later = t.packets
    assert syn.chains() == path("forward")
    dnat = [s for s in syn.nat_steps() if s.verdict == "accept" and "DNAT" in s.rule]
    assert dnat and dnat[0].chain == "PREROUTING" and dnat[0].position == 1
    # filter FORWARD already sees the translated destination
    fwd = next(s for s in syn.steps if (s.table, s.chain) == ("filter", "FORWARD"))
    assert (fwd.seen.dst, fwd.seen.dport) == (b.ip, PORT)
    from_a = [p for p in later if p.first.src == a.ip]
    assert len(from_a) >= 2  # the handshake's ACK, the data, the FIN or RST
    for p in later:
        assert not p.nat_steps(), t.render()
    for p in from_a:
        assert p.chains() == path("forward", new=False)


def test_a_drop_ends_the_walk_where_it_happened(cluster: Cluster) -> None:
    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    rule = ["-d", b.ip, "-p", "tcp", "--dport", str(PORT), "-j", "DROP"]
    node.ns.run(["iptables", "-I", "FORWARD", *rule])
    try:
        t = trace_probe(node.ns, a.ns, b.ip, PORT, timeout=0.3)
    finally:
        node.ns.run(["iptables", "-D", "FORWARD", *rule])
    (syn,) = t.packets
    assert syn.verdict == "drop"
    dropped = syn.where_dropped()
    assert dropped is not None and (dropped.table, dropped.chain) == ("filter", "FORWARD")
    assert syn.chains()[-1] == ("filter", "FORWARD")
    assert "dropped in filter FORWARD" in t.render()


def test_icmp_echo_is_traced_by_its_id(cluster: Cluster) -> None:
    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    t = trace_probe(node.ns, a.ns, b.ip, proto="icmp")
    assert t.result.ok
    assert [p.first.flags for p in t.packets] == ["echo-request", "echo-reply"]
    assert t.packets[0].chains() == path("forward")


def test_tracing_only_the_probe_and_leaving_nothing_behind(cluster: Cluster) -> None:
    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    before = _ruleset(cluster)
    from grader.probes import tcp_syn

    def send_two() -> None:
        tcp_syn(a.ns, b.ip, PORT, sport=41001)  # not matched: must not appear
        tcp_syn(a.ns, b.ip, PORT, sport=41002)

    t = trace(node.ns, send_two, Match("tcp", dst=b.ip, sport=41002, dport=PORT))
    assert {p.first.sport for p in t.packets if p.first.src == a.ip} == {41002}
    assert _ruleset(cluster) == before
    assert trace_tables(node.ns) == []


def test_tracing_is_switched_off_when_send_fails(cluster: Cluster) -> None:
    node = cluster.node(1)
    before = _ruleset(cluster)

    def boom() -> None:
        assert trace_tables(node.ns)  # tracing is on while send() runs
        raise RuntimeError("the probe broke")

    with pytest.raises(RuntimeError, match="the probe broke"):
        trace(node.ns, boom, Match("tcp", dport=1))
    assert trace_tables(node.ns) == []
    assert _ruleset(cluster) == before


def test_declare_builtin_chains_trusts_the_kernel_not_iptables_save(cluster: Cluster) -> None:
    """iptables-nft's `iptables-save` lists every built-in chain of a table it knows, even
    those the kernel does not have; a chain missing in the kernel is on no packet's path."""
    node = cluster.node(1).ns
    node.run(["iptables", "-t", "nat", "-F"])
    node.run(["nft", "delete", "table", "ip", "nat"])
    node.run(["iptables", "-t", "nat", "-A", "PREROUTING", "-d", VIP, "-j", "RETURN"])
    assert ":POSTROUTING ACCEPT" in node.iptables_save("nat")  # shown, yet not there
    assert "POSTROUTING" not in node.run(["nft", "list", "table", "ip", "nat"]).stdout
    assert declare_builtin_chains(node) == ["nat INPUT", "nat OUTPUT", "nat POSTROUTING"]
    node.run(["iptables", "-t", "nat", "-D", "PREROUTING", "-d", VIP, "-j", "RETURN"])
    assert declare_builtin_chains(node) == []


def test_k8snet_trace_command(cluster: Cluster, tmp_path) -> None:
    from typer.testing import CliRunner

    from grader.cli import _load_commands, app

    _load_commands()
    b = cluster.pod("b")
    svg = tmp_path / "walk.svg"
    args = ["trace", "t-netfilter", "node1-a", "--to", f"{b.ip}:{PORT}", "--svg", str(svg)]
    out = CliRunner().invoke(app, args)
    assert out.exit_code == 0, out.output
    assert f"run {cluster.prefix} (t-netfilter)" in out.output
    assert "routing decision: another host (forward), out eth0" in out.output
    assert svg.read_text().startswith("<?xml")
    bad = CliRunner().invoke(app, ["trace", "t-netfilter", "node9", "--to", f"{b.ip}:1"])
    assert bad.exit_code == 2 and "roles:" in bad.output


def test_several_probes_traced_at_once_are_told_apart(cluster: Cluster) -> None:
    from grader.tracing import Probe, trace_probes

    node, a, b = cluster.node(1), cluster.pod("a"), cluster.pod("b")
    fwd, out = trace_probes(node.ns, [Probe(a.ns, b.ip, PORT), Probe(node.ns, b.ip, PORT)])
    assert fwd.result.ok and out.result.ok
    assert fwd.packets[0].chains() == path("forward")
    assert out.packets[0].chains() == path("local-out")
    assert all(a.ip in (p.first.src, p.first.dst) for p in fwd.packets)
    assert all(node.ip in (p.first.src, p.first.dst) for p in out.packets)
