"""Parsing `nft monitor` trace lines into packets and steps (recorded from a real trace).

The fixture is pod a's SYN to a DNAT'd virtual IP, traced in its node: it arrives on the
bridge cni0, so br_netfilter runs PREROUTING and the packet re-enters IP under a new trace
id without its trace flag; the tracer's "again" chains mark it again and the parser must
join both halves into one packet.
"""

from __future__ import annotations

from pathlib import Path

from course.netfilter import path, render_prediction
from course.netfilter.tracer import Match, Trace, _tcp_flags, parse_trace_lines

FIXTURE = Path(__file__).parent / "fixtures" / "dnat_bridge_forward.txt"


def packets():
    return parse_trace_lines(FIXTURE.read_text().splitlines(), "k8snet_trace_1_1")


def test_bridged_syn_is_one_packet_across_two_trace_ids():
    syn, reply = packets()
    assert syn.first.flags == "SYN" and syn.first.iif == "cni0"
    assert syn.chains() == path("forward")
    assert syn.kind() == "forward"
    assert reply.first.flags == "RST,ACK"
    assert reply.chains() == path("forward", new=False)


def test_steps_carry_rule_text_and_the_packet_each_chain_saw():
    syn = packets()[0]
    dnat = next(s for s in syn.steps if s.table == "nat" and s.chain == "PREROUTING")
    assert dnat.kind == "rule" and dnat.verdict == "accept"
    assert "dnat to 10.244.2.2:8080" in dnat.nft and dnat.handle is not None
    assert dnat.seen.dst == "10.96.0.50"
    fwd = next(s for s in syn.steps if (s.table, s.chain) == ("filter", "FORWARD"))
    assert (fwd.seen.dst, fwd.seen.dport, fwd.seen.oif) == ("10.244.2.2", 8080, "eth0")


def test_render_shows_the_translation_and_the_routing_decision():
    t = Trace("knl-test-node1", Match("tcp", dst="10.96.0.50", dport=80), packets())
    text = t.render()
    assert "routing decision: another host (forward), out eth0" in text
    assert "packet now TCP 10.244.1.2" in text and "-> 10.244.2.2:8080" in text
    assert t.draw().source.count("#2563eb") > 3  # the walk is drawn


def test_our_own_table_never_appears_in_steps():
    assert all(not s.table.startswith("k8snet_trace") for p in packets() for s in p.steps)


def test_tcp_flags():
    assert _tcp_flags("syn") == "SYN"
    assert _tcp_flags("0x12") == "SYN,ACK"
    assert _tcp_flags("fin | ack") == "FIN,ACK"


def test_prediction_feedback_marks_the_first_difference():
    traced = path("forward")
    predicted = [traced[0], traced[2], traced[1], *traced[3:]]
    text = render_prediction(predicted, traced)
    lines = text.splitlines()
    assert "<== first difference" in lines[2] and "nat PREROUTING" in lines[2]
    assert sum("<==" in line for line in lines) == 1
    short = render_prediction(traced[:3], traced)
    assert "(nothing)" in short and "<== first difference" in short.splitlines()[4]
