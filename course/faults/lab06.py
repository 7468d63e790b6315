"""Lab 06's break/fix catalogue: a working ClusterIP (10.96.0.10:80) broken around kube-proxy.

Working state: the course's kube-proxy (`kube_proxy_sync`) has written the rules for the
lab's Services into node1, with kube-proxy's jumps from the built-in chains; new connections
from pod d to 10.96.0.10:80 reach the ready pods. Every fault below breaks that somewhere
kube-proxy's own resync would *not* repair (a built-in chain, the filter table, a sysctl,
a link), as happens on real nodes when someone or something else touches the node.
"""

from __future__ import annotations

import shlex
from typing import Any

from course.faults import Catalogue, Fault, Roles
from course.kernel import Netns
from course.podnet.bridge import host_veth_name

NODE = "node1"
CLUSTER_IP = "10.96.0.10"
STRAY = ["-d", f"{CLUSTER_IP}/32", "-p", "tcp", "--dport", "80", "-j", "ACCEPT"]
POD_C = "10.244.1.4"
BLOCK_C = ["-d", f"{POD_C}/32", "-p", "tcp", "-j", "DROP"]


def kube_proxy_sync(node: Netns, services: list[Any], controller: Any) -> str:
    """Let the course's kube-proxy write every Service's rules (a clean, working nat table).

    The break/fix exercise starts from rules known to be right, whatever your own
    `service_rules` wrote, so it grades the repair and nothing else.
    """
    from course.kubeproxy import Proxier, ProxierOptions
    from course.kubeproxy.proxier import ensure_jump_rules

    proxier = Proxier(None, ProxierOptions(node_name=NODE))
    for svc in services:
        proxier.on_service_add(svc)
    for svc in services:
        for es in controller.slices_for(svc.namespace, svc.name):
            proxier.on_endpoint_slice_add(es)
    payload = proxier.sync_proxy_rules()
    node.run(["iptables", "-t", "nat", "-F"])
    node.run(["iptables", "-t", "nat", "-X"])
    ensure_jump_rules(node)
    node.apply_iptables(payload, noflush=True)
    node.run(["conntrack", "-F"], check=False)
    return payload


def _rules(ns: Netns, table: str, chain: str) -> list[str]:
    return ns.run(["iptables", "-t", table, "-S", chain]).stdout.splitlines()


def _has(ns: Netns, table: str, chain: str, args: list[str]) -> bool:
    check = ["iptables", "-t", table, "-C", chain, *args]
    return ns.run(check, check=False).returncode == 0


# --- the faults ------------------------------------------------------------------------------
def _jumps(roles: Roles) -> list[list[str]]:
    """The PREROUTING rules that jump to KUBE-SERVICES, as argument lists."""
    return [
        shlex.split(line)[2:]
        for line in _rules(roles[NODE], "nat", "PREROUTING")
        if line.startswith("-A PREROUTING") and line.endswith("-j KUBE-SERVICES")
    ]


def _drop_jump(roles: Roles) -> None:
    for args in _jumps(roles):
        roles[NODE].run(["iptables", "-t", "nat", "-D", "PREROUTING", *args])


def _restore_jumps(roles: Roles) -> None:
    from course.kubeproxy.proxier import ensure_jump_rules

    ensure_jump_rules(roles[NODE])


def _stray_accept(roles: Roles) -> None:
    roles[NODE].run(["iptables", "-t", "nat", "-I", "PREROUTING", "1", *STRAY])


def _remove_stray(roles: Roles) -> None:
    roles[NODE].run(["iptables", "-t", "nat", "-D", "PREROUTING", *STRAY])


def _forward_off(roles: Roles) -> None:
    roles[NODE].sysctl("net.ipv4.ip_forward", 0)


def _pod_a_port(roles: Roles) -> str:
    return host_veth_name(roles[f"{NODE}-a"].name)


def _block_c(roles: Roles) -> None:
    roles[NODE].run(["iptables", "-t", "filter", "-I", "FORWARD", "1", *BLOCK_C])


def _unblock_c(roles: Roles) -> None:
    roles[NODE].run(["iptables", "-t", "filter", "-D", "FORWARD", *BLOCK_C])


CATALOGUE = Catalogue(
    name="06-kube-proxy/cluster-ip",
    k=2,
    # With the jump gone, the stray ACCEPT stands in front of nothing: putting the jump back
    # the way kube-proxy does (`-I`, first in PREROUTING) puts it ahead of the ACCEPT, and
    # that one repair heals the ClusterIP with the second fault still in the chain.
    apart=(("prerouting-jump-missing", "prerouting-stray-accept"),),
    story=(
        "New connections from pod d to the ClusterIP 10.96.0.10:80 fail, some or all of them. "
        "kube-proxy's own chains are intact (running sync() again will not help). Find where "
        "the SYNs stop (tcpdump, iptables -t nat -L -v counters, conntrack -L, ip, sysctl in "
        "node1 and the pods) and repair the node."
    ),
    faults=(
        Fault(
            "prerouting-jump-missing",
            "PREROUTING no longer jumps to KUBE-SERVICES",
            _drop_jump,
            where="pod d's SYN reaches node1 still addressed to 10.96.0.10, and nothing there "
            "ever translates it",
            look_at="node1's nat table, the built-in chain PREROUTING (`iptables -t nat -S "
            "PREROUTING`): does any rule send packets into kube-proxy's chains?",
            present=lambda r: not _jumps(r),
            repair=_restore_jumps,
        ),
        Fault(
            "prerouting-stray-accept",
            "an ACCEPT rule for the ClusterIP sits in front of kube-proxy's jump",
            _stray_accept,
            where="pod d's SYN reaches node1 still addressed to 10.96.0.10, and nothing there "
            "ever translates it",
            look_at="the order of the rules in node1's nat PREROUTING chain (`iptables -t nat "
            "-L PREROUTING -n -v --line-numbers`): which one does the SYN match first?",
            present=lambda r: _has(r[NODE], "nat", "PREROUTING", STRAY),
            repair=_remove_stray,
        ),
        Fault(
            "node-forwarding-off",
            "node1 no longer forwards packets (ip_forward 0)",
            _forward_off,
            where="pod d's SYN enters node1 through cni0 and is translated, but node1 never "
            "sends it on to any pod",
            look_at="whether node1 routes packets between its interfaces at all "
            "(`sysctl net.ipv4.ip_forward` in node1)",
            present=lambda r: r[NODE].sysctl("net.ipv4.ip_forward") == "0",
            repair=lambda r: r[NODE].sysctl("net.ipv4.ip_forward", 1),
        ),
        Fault(
            "pod-a-port-down",
            "pod a's bridge port on node1 is down",
            lambda r: r[NODE].down(_pod_a_port(r)),
            where="connections DNATed to pod a (10.244.1.2) leave node1's cni0 and never reach "
            "pod a; the others work",
            look_at="the ports of node1's bridge cni0 (`ip -br link` and `bridge link` in "
            "node1): which one carries pod a?",
            present=lambda r: not r[NODE].link(_pod_a_port(r))["up"],
            repair=lambda r: r[NODE].up(_pod_a_port(r)),
        ),
        Fault(
            "forward-drop-pod-c",
            "a filter rule drops forwarded TCP to pod c",
            _block_c,
            where="connections DNATed to pod c (10.244.1.4) are translated in node1 and then "
            "vanish inside node1; the others work",
            look_at="node1's filter table, chain FORWARD (`iptables -S FORWARD`, and the "
            "packet counters of `iptables -L FORWARD -n -v`)",
            present=lambda r: _has(r[NODE], "filter", "FORWARD", BLOCK_C),
            repair=_unblock_c,
        ),
    ),
)
