"""Lab 07's break/fix catalogue: the NodePort path, masquerade and hairpin, broken on a node.

Working state (after exercises 1 to 4): the client reaches `web` through node1:30080 (pods
b and c on node2 see node1's address), pod a reaches itself through its Service
10.96.0.30, and pod dns reaches pod a through the same Service across node1's bridge.
Every fault below breaks one of those in one place, as the issue of this lab lists them.
"""

from __future__ import annotations

import shlex

from course.faults import Catalogue, Fault, Roles
from course.kernel import Netns
from course.podnet.bridge import host_veth_name

NODE1, NODE2 = "node1", "node2"
MARK = "0x4000"
NODEPORTS_JUMP = [
    "-m", "comment", "--comment",
    "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
    "-m", "addrtype", "--dst-type", "LOCAL", "-j", "KUBE-NODEPORTS",
]  # fmt: skip
MASQUERADE = [
    "-m", "comment", "--comment", "kubernetes service traffic requiring SNAT",
    "-j", "MASQUERADE", "--random-fully",
]  # fmt: skip


def _rules(ns: Netns, chain: str) -> list[list[str]]:
    """`iptables -t nat -S CHAIN` as argument lists (without `-A CHAIN`)."""
    out = ns.run(["iptables", "-t", "nat", "-S", chain], check=False).stdout
    return [shlex.split(line)[2:] for line in out.splitlines() if line.startswith("-A ")]


def _jumps_to(ns: Netns, chain: str, target: str) -> list[list[str]]:
    return [r for r in _rules(ns, chain) if r[-2:] == ["-j", target]]


def _nat(ns: Netns, *args: str) -> None:
    ns.run(["iptables", "-t", "nat", *args])


# --- the faults --------------------------------------------------------------------------------
def _drop_nodeports_jump(roles: Roles) -> None:
    for rule in _jumps_to(roles[NODE1], "KUBE-SERVICES", "KUBE-NODEPORTS"):
        _nat(roles[NODE1], "-D", "KUBE-SERVICES", *rule)


def _add_nodeports_jump(roles: Roles) -> None:
    _nat(roles[NODE1], "-A", "KUBE-SERVICES", *NODEPORTS_JUMP)


def _masquerade_rules(ns: Netns) -> list[list[str]]:
    return [r for r in _rules(ns, "KUBE-POSTROUTING") if "MASQUERADE" in r]


def _drop_masquerade(roles: Roles) -> None:
    for rule in _masquerade_rules(roles[NODE1]):
        _nat(roles[NODE1], "-D", "KUBE-POSTROUTING", *rule)


def _wrong_mark(roles: Roles) -> None:
    _nat(roles[NODE1], "-F", "KUBE-MARK-MASQ")
    _nat(roles[NODE1], "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", "0x8000")


def _mark_wrong(roles: Roles) -> bool:
    marks = [r for r in _rules(roles[NODE1], "KUBE-MARK-MASQ") if "MARK" in r]
    return not any(f"{MARK}/{MARK}" in r for r in marks)


def _right_mark(roles: Roles) -> None:
    _nat(roles[NODE1], "-F", "KUBE-MARK-MASQ")
    _nat(roles[NODE1], "-A", "KUBE-MARK-MASQ", "-j", "MARK", "--or-mark", MARK)


def _pod_a_port(roles: Roles) -> str:
    return host_veth_name(roles[f"{NODE1}-a"].name)


def _hairpin(roles: Roles) -> bool:
    return roles[NODE1].bridge_port_flags(_pod_a_port(roles))["hairpin"]


BR_NF = "net.bridge.bridge-nf-call-iptables"
FORWARD = "net.ipv4.ip_forward"

CATALOGUE = Catalogue(
    name="07-nodeport-masquerade/nodeport-path",
    k=2,
    story=(
        "Something on the nodes changed. Some of these fail now: the client through node1:30080, "
        "pod a through its own Service 10.96.0.30, pod dns through the same Service. Find where "
        "the packets stop (tagged connections with look(), tcpdump, iptables -t nat -L -v "
        "counters, conntrack -L, sysctl, bridge -d link) and repair the nodes by hand."
    ),
    faults=(
        Fault(
            "nodeport-jump-missing",
            "KUBE-SERVICES no longer ends with the jump to KUBE-NODEPORTS",
            _drop_nodeports_jump,
            where="the client's SYN reaches node1 addressed to 192.168.1.11:30080 and is never "
            "translated: node1 itself answers, and nothing listens there",
            look_at="the last rule of node1's KUBE-SERVICES chain (`iptables -t nat -S "
            "KUBE-SERVICES`): how does a packet for one of the node's own addresses reach "
            "KUBE-NODEPORTS?",
            present=lambda r: not _jumps_to(r[NODE1], "KUBE-SERVICES", "KUBE-NODEPORTS"),
            repair=_add_nodeports_jump,
        ),
        Fault(
            "masquerade-missing",
            "KUBE-POSTROUTING on node1 no longer masquerades",
            _drop_masquerade,
            where="the pod on node2 gets the client's SYN from the client's own address, and "
            "its answer never passes node1 again",
            look_at="node1's KUBE-POSTROUTING chain, rule by rule, with counters (`iptables -t "
            "nat -L KUBE-POSTROUTING -n -v`)",
            present=lambda r: not _masquerade_rules(r[NODE1]),
            repair=lambda r: _nat(r[NODE1], "-A", "KUBE-POSTROUTING", *MASQUERADE),
        ),
        Fault(
            "mark-bit-wrong",
            "KUBE-MARK-MASQ on node1 sets 0x8000",
            _wrong_mark,
            where="node1 translates the SYN's destination but sends it on with the client's "
            "source address: KUBE-POSTROUTING returns early",
            look_at="which mark KUBE-MARK-MASQ sets and which mark KUBE-POSTROUTING tests "
            "(`iptables -t nat -S` in node1)",
            present=_mark_wrong,
            repair=_right_mark,
        ),
        Fault(
            "hairpin-off",
            "pod a's bridge port on node1 has hairpin mode off",
            lambda r: r[NODE1].bridge_port(_pod_a_port(r), hairpin=False),
            where="pod a's SYN to 10.96.0.30 is translated back to pod a, and never comes back "
            "out of the bridge into pod a",
            look_at="the flags of pod a's port on cni0 (`bridge -d link show` in node1)",
            present=lambda r: not _hairpin(r),
            repair=lambda r: r[NODE1].bridge_port(_pod_a_port(r), hairpin=True),
        ),
        Fault(
            "bridge-netfilter-off",
            "node1's bridge no longer passes frames through iptables",
            lambda r: r[NODE1].sysctl(BR_NF, 0),
            where="pod dns gets its answer from pod a's own address instead of 10.96.0.30: "
            "the reply crossed cni0 without being translated back",
            look_at="whether bridged frames on node1 go through netfilter at all (`sysctl "
            "net.bridge.bridge-nf-call-iptables` in node1)",
            present=lambda r: r[NODE1].sysctl(BR_NF) == "0",
            repair=lambda r: r[NODE1].sysctl(BR_NF, 1),
        ),
        Fault(
            "node2-forwarding-off",
            "node2 no longer forwards packets",
            lambda r: r[NODE2].sysctl(FORWARD, 0),
            where="node1 translates the client's SYN and sends it to node2, and no pod on node2 "
            "ever sees it",
            look_at="whether node2 routes packets between its interfaces at all (`sysctl "
            "net.ipv4.ip_forward` in node2)",
            present=lambda r: r[NODE2].sysctl(FORWARD) == "0",
            repair=lambda r: r[NODE2].sysctl(FORWARD, 1),
        ),
    ),
)
