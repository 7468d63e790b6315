"""Lab 05's break/fix catalogue: node1's iptables rules, broken the ways people break them.

Working state (end of exercise 4): node1 DNATs 10.96.0.50:80 to pod b (10.244.2.2:8080) in
nat PREROUTING and nat OUTPUT, drops pod c's connections to it in filter FORWARD, and (from
the lab's setup) masquerades its pods' connections leaving the pod network in nat
POSTROUTING. So pod a and node1 reach the Service, pod c does not, and pod a reaches the
server outside the cluster (the router's 192.168.1.1:80). Every fault below breaks one of
these in a different place; the learner finds it with `k8snet trace`/`trace(...)`,
counters (`iptables -L -v`) and `iptables -S`.
"""

from __future__ import annotations

import shlex

from course.faults import Catalogue, Fault, Roles
from course.netfilter.lab import (
    BACKEND_IP,
    BLOCKED_IP,
    MASQUERADE,
    NODE,
    OUTSIDE_IP,
    OUTSIDE_PORT,
    VIP,
    VIP_PORT,
    WEB_PORT,
)

DNAT = (
    f"-d {VIP}/32 -p tcp -m tcp --dport {VIP_PORT} -j DNAT --to-destination {BACKEND_IP}:{WEB_PORT}"
)
ALLOW_COMMENT = "allow the pods of node1"


def _rules(roles: Roles, table: str, chain: str) -> list[list[str]]:
    """`iptables -S chain` of node1 as argument lists, without the leading `-A chain`."""
    out = roles[NODE].run(["iptables", "-t", table, "-S", chain]).stdout
    return [shlex.split(line)[2:] for line in out.splitlines() if line.startswith("-A ")]


def _ipt(roles: Roles, *args: str) -> None:
    roles[NODE].run(["iptables", *args])


def _is_drop(rule: list[str]) -> bool:
    return "-j" in rule and rule[rule.index("-j") + 1] in ("DROP", "REJECT")


# --- nat OUTPUT lost its DNAT ------------------------------------------------------------------------
def _flush_output(roles: Roles) -> None:
    _ipt(roles, "-t", "nat", "-F", "OUTPUT")


def _output_empty(roles: Roles) -> bool:
    return not _rules(roles, "nat", "OUTPUT")


def _restore_output(roles: Roles) -> None:
    _ipt(roles, "-t", "nat", "-A", "OUTPUT", *shlex.split(DNAT))


# --- the DROP moved from FORWARD to INPUT -----------------------------------------------------------
def _move_drops(roles: Roles, src: str, dst: str) -> None:
    for rule in _rules(roles, "filter", src):
        if _is_drop(rule):
            _ipt(roles, "-D", src, *rule)
            _ipt(roles, "-A", dst, *rule)


def _drop_in_input(roles: Roles) -> bool:
    forward = any(_is_drop(r) for r in _rules(roles, "filter", "FORWARD"))
    return not forward and any(_is_drop(r) for r in _rules(roles, "filter", "INPUT"))


# --- an ACCEPT inserted before the DROP -------------------------------------------------------------
ALLOW = ["-s", "10.244.1.0/24", "-m", "comment", "--comment", ALLOW_COMMENT, "-j", "ACCEPT"]


def _accept_first(roles: Roles) -> None:
    _ipt(roles, "-I", "FORWARD", "1", *ALLOW)


def _accept_before_drop(roles: Roles) -> bool:
    rules = _rules(roles, "filter", "FORWARD")
    first_drop = next((i for i, r in enumerate(rules) if _is_drop(r)), len(rules))
    return any(ALLOW_COMMENT in r for r in rules[:first_drop])


def _remove_accept(roles: Roles) -> None:
    _ipt(roles, "-D", "FORWARD", *ALLOW)


# --- DNAT to the virtual port instead of the pod's --------------------------------------------------
WRONG = f"{BACKEND_IP}:{VIP_PORT}"
RIGHT = f"{BACKEND_IP}:{WEB_PORT}"


def _swap_port(roles: Roles, old: str, new: str) -> None:
    for pos, rule in enumerate(_rules(roles, "nat", "PREROUTING"), start=1):
        if old in rule:
            fixed = [new if word == old else word for word in rule]
            _ipt(roles, "-t", "nat", "-R", "PREROUTING", str(pos), *fixed)


def _wrong_port(roles: Roles) -> bool:
    return any(WRONG in r for r in _rules(roles, "nat", "PREROUTING"))


# --- the masquerade "moved" to nat PREROUTING --------------------------------------------------
def _masquerade_to_prerouting(roles: Roles) -> None:
    """Take MASQUERADE out of nat POSTROUTING and try it in PREROUTING, as someone who
    thought "rewrite the address where the packet comes in" would. The kernel refuses the
    second rule (MASQUERADE is only usable from POSTROUTING), so none is left anywhere."""
    _ipt(roles, "-t", "nat", "-D", "POSTROUTING", *shlex.split(MASQUERADE))
    roles[NODE].run(["iptables", "-t", "nat", "-A", "PREROUTING", *shlex.split(MASQUERADE)],
                    check=False)  # fmt: skip


def _no_masquerade(roles: Roles) -> bool:
    return not any("MASQUERADE" in r for r in _rules(roles, "nat", "POSTROUTING"))


def _restore_masquerade(roles: Roles) -> None:
    _ipt(roles, "-t", "nat", "-A", "POSTROUTING", *shlex.split(MASQUERADE))


# --- FORWARD policy DROP ------------------------------------------------------------------------------
def _policy(roles: Roles) -> str:
    first = roles[NODE].run(["iptables", "-S", "FORWARD"]).stdout.splitlines()[0]
    return first.split()[-1]  # "-P FORWARD ACCEPT"


CATALOGUE = Catalogue(
    name="05-netfilter-order/service",
    k=2,
    story=(
        f"node1 misbehaves: pod a, node1 and pod c no longer get what exercises 3 and 4 "
        f"gave them at the Service {VIP}:{VIP_PORT} (pod a and node1 answered by pod b, "
        f"pod c blocked), or pod a no longer reaches the server outside the cluster "
        f"({OUTSIDE_IP}:{OUTSIDE_PORT}). Trace their connections, read the counters and the "
        "rules, and repair node1."
    ),
    faults=(
        Fault(
            "dnat-output-missing",
            "nat OUTPUT lost its DNAT rule",
            _flush_output,
            where=f"node1's own SYN to {VIP}:{VIP_PORT} walks nat OUTPUT without a match and "
            "leaves by eth0 untranslated",
            look_at="the nat table's OUTPUT chain in node1 (`iptables -t nat -S OUTPUT`)",
            present=_output_empty,
            repair=_restore_output,
        ),
        Fault(
            "drop-in-input",
            "pod c's DROP moved from filter FORWARD to filter INPUT",
            lambda r: _move_drops(r, "FORWARD", "INPUT"),
            where="pod c's SYN to the Service is forwarded by node1 and answered by pod b",
            look_at="which filter chain holds the DROP for pod c, and which chains pod c's "
            "packets pass (`iptables -S`, a trace)",
            present=_drop_in_input,
            repair=lambda r: _move_drops(r, "INPUT", "FORWARD"),
        ),
        Fault(
            "accept-before-drop",
            "an ACCEPT for node1's pods inserted before the DROP",
            _accept_first,
            where="filter FORWARD accepts pod c's SYN before the DROP sees it",
            look_at="the order of the rules in filter FORWARD and their counters "
            "(`iptables -L FORWARD -v -n --line-numbers`)",
            present=_accept_before_drop,
            repair=_remove_accept,
        ),
        Fault(
            "dnat-wrong-port",
            f"nat PREROUTING DNATs to {WRONG} instead of {RIGHT}",
            lambda r: _swap_port(r, RIGHT, WRONG),
            where="pod a's SYN is translated and reaches pod b, which answers with a reset",
            look_at="the destination of the DNAT rule in nat PREROUTING",
            present=_wrong_port,
            repair=lambda r: _swap_port(r, WRONG, RIGHT),
        ),
        Fault(
            "masquerade-in-prerouting",
            "the MASQUERADE rule taken out of nat POSTROUTING, and refused in nat PREROUTING",
            _masquerade_to_prerouting,
            where=f"pod a's SYN to {OUTSIDE_IP}:{OUTSIDE_PORT} leaves node1 with its pod "
            "address as source; the server outside has no route back to pods",
            look_at="the nat table's POSTROUTING chain in node1 (`iptables -t nat -S "
            "POSTROUTING`), and which chains the kernel allows MASQUERADE in (question 4)",
            present=_no_masquerade,
            repair=_restore_masquerade,
        ),
        Fault(
            "forward-policy-drop",
            "filter FORWARD's policy is DROP",
            lambda r: _ipt(r, "-P", "FORWARD", "DROP"),
            where="node1 drops pod a's packets at the end of filter FORWARD, where no rule "
            "matched them",
            look_at="the policy of filter FORWARD (`iptables -S FORWARD`, first line)",
            present=lambda r: _policy(r) == "DROP",
            repair=lambda r: _ipt(r, "-P", "FORWARD", "ACCEPT"),
        ),
    ),
)

# What the learner's exercises add to the setup's state (`course.netfilter.lab.prepare`, which
# brings the MASQUERADE) for the working state, for tests and instructors.
WORKING_RULES = (
    f"-t nat -A PREROUTING {DNAT}",
    f"-t nat -A OUTPUT {DNAT}",
    f"-A FORWARD -s {BLOCKED_IP}/32 -d {BACKEND_IP}/32 -p tcp -m tcp --dport {WEB_PORT} -j DROP",
)
