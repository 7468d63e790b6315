"""course.netfilter.model: the order of tables and chains on the three paths (no kernel)."""

from __future__ import annotations

import pytest

from course.netfilter import Hook, explain, hook_stages, path, target_allowed

FORWARD = [
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("mangle", "FORWARD"),
    ("filter", "FORWARD"),
    ("security", "FORWARD"),
    ("mangle", "POSTROUTING"),
    ("nat", "POSTROUTING"),
]
LOCAL_IN = [
    ("raw", "PREROUTING"),
    ("mangle", "PREROUTING"),
    ("nat", "PREROUTING"),
    ("mangle", "INPUT"),
    ("filter", "INPUT"),
    ("nat", "INPUT"),
    ("security", "INPUT"),
]
LOCAL_OUT = [
    ("raw", "OUTPUT"),
    ("mangle", "OUTPUT"),
    ("nat", "OUTPUT"),
    ("filter", "OUTPUT"),
    ("security", "OUTPUT"),
    ("mangle", "POSTROUTING"),
    ("nat", "POSTROUTING"),
]


@pytest.mark.parametrize(
    ("kind", "expected"), [("forward", FORWARD), ("local-in", LOCAL_IN), ("local-out", LOCAL_OUT)]
)
def test_first_packet_paths(kind, expected):
    assert path(kind) == expected


@pytest.mark.parametrize("kind", ["forward", "local-in", "local-out"])
def test_later_packets_skip_every_nat_chain(kind):
    later = path(kind, new=False)
    assert later == [tc for tc in path(kind) if tc[0] != "nat"]


def test_without_conntrack_no_nat_chain_is_walked():
    assert all(t != "nat" for t, _ in path("forward", conntrack=False))


def test_legacy_iptables_runs_security_before_nat_on_input():
    legacy = path("local-in", backend="legacy")
    assert legacy[-2:] == [("security", "INPUT"), ("nat", "INPUT")]
    assert path("local-in")[-2:] == [("nat", "INPUT"), ("security", "INPUT")]


def test_conntrack_sits_between_raw_and_mangle_and_confirms_last():
    pre = [s.name for s in hook_stages(Hook.PREROUTING)]
    assert pre == [
        "defrag (PREROUTING)",
        "raw PREROUTING",
        "conntrack (PREROUTING)",
        "mangle PREROUTING",
        "nat PREROUTING",
    ]
    assert hook_stages(Hook.POSTROUTING)[-1].kind == "confirm"


def test_nat_targets_only_where_the_kernel_takes_them():
    assert target_allowed("DNAT", "nat", "PREROUTING")
    assert target_allowed("DNAT", "nat", "OUTPUT")
    assert not target_allowed("DNAT", "filter", "INPUT")
    assert not target_allowed("MASQUERADE", "nat", "PREROUTING")
    assert target_allowed("MASQUERADE", "nat", "POSTROUTING")
    assert target_allowed("ACCEPT", "filter", "FORWARD")


def test_explain_names_the_routing_decision():
    text = explain("forward")
    assert "routing decision: for another host" in text
    assert "PREROUTING   raw -> (defrag)" not in text  # defrag is shown in stage order
    assert "FORWARD      mangle -> filter -> security" in text
