"""Small, read-mostly helpers around iptables inside a lab namespace.

iptables-nft creates chains lazily: a namespace has only the built-in chains some rule or
`iptables-restore` asked for, and a chain that does not exist is not on any packet's path.
`declare_builtin_chains` makes every table register every built-in chain, which is what a
real node looks like after kube-proxy, a CNI plugin and a firewall have all run, and what
the model in `course.netfilter.model` describes.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from course.kernel import Netns
from course.netfilter.model import BUILTIN_CHAINS, TABLES


def existing_chains(ns: Netns) -> dict[str, set[str]]:
    """{table: {chain, ...}} of the `ip` family as the kernel holds them (`nft list chains`).

    Not `iptables-save`: iptables-nft prints every built-in chain of a table it knows,
    whether or not the kernel has it, and a chain the kernel does not have is on no path.
    """
    found: dict[str, set[str]] = {}
    table = ""
    for line in ns.run(["nft", "list", "chains", "ip"]).stdout.splitlines():
        words = line.split()
        if words[:2] == ["table", "ip"]:
            table = words[2]
            found[table] = set()
        elif words[:1] == ["chain"] and table:
            found[table].add(words[1])
    return found


def declare_builtin_chains(ns: Netns) -> list[str]:
    """Create every missing built-in chain of raw, mangle, nat, filter and security.

    Chains that exist keep their rules, policies and counters (`--noflush`, and only the
    missing chains are declared). Returns the `table CHAIN` names it created.
    """
    have = existing_chains(ns)
    payload: list[str] = []
    created: list[str] = []
    for table in TABLES:
        missing = [str(h) for h in BUILTIN_CHAINS[table] if str(h) not in have.get(table, {})]
        if not missing:
            continue
        payload.append(f"*{table}")
        payload += [f":{chain} ACCEPT [0:0]" for chain in missing]
        payload.append("COMMIT")
        created += [f"{table} {chain}" for chain in missing]
    if payload:
        ns.apply_iptables("\n".join(payload) + "\n", noflush=True)
    return created


CONNTRACK_CHAIN = "K8SNET-CONNTRACK"


def enable_conntrack(ns: Netns) -> None:
    """Switch conntrack on in `ns` without putting anything on any packet's path.

    Conntrack (and with it the nat table) is enabled per namespace by the first rule that
    needs it (a NAT target, `-m conntrack`). A rule in a user chain nothing jumps to is
    enough: the kernel enables conntrack when the rule is loaded, and no packet meets it.
    """
    if CONNTRACK_CHAIN in existing_chains(ns).get("filter", {}):
        return
    ns.apply_iptables(
        f"*filter\n:{CONNTRACK_CHAIN} - [0:0]\n"
        f"-A {CONNTRACK_CHAIN} -m conntrack --ctstate NEW -m comment --comment "
        '"k8snet: enables conntrack in this namespace; nothing jumps here" -j RETURN\n'
        "COMMIT\n",
        noflush=True,
    )


@dataclass(frozen=True)
class RuleCounter:
    """One rule with its packet and byte counters, as `iptables-save -c` prints them."""

    table: str
    chain: str
    position: int  # 1-based, as `iptables -L --line-numbers` counts
    rule: str  # the `-A CHAIN ...` line
    packets: int
    bytes: int


_COUNTED = re.compile(r"^\[(\d+):(\d+)\] (-A (\S+) .*)$")


def rule_counters(ns: Netns, table: str) -> list[RuleCounter]:
    """Every rule of `table` with its counters (read from the kernel, not from our notes)."""
    out: list[RuleCounter] = []
    positions: dict[str, int] = {}
    for line in ns.run(["iptables-save", "-c", "-t", table]).stdout.splitlines():
        m = _COUNTED.match(line)
        if m:
            chain = m.group(4)
            positions[chain] = positions.get(chain, 0) + 1
            pk, by = int(m.group(1)), int(m.group(2))
            out.append(RuleCounter(table, chain, positions[chain], m.group(3), pk, by))
    return out


def chain_rules(ns: Netns, table: str) -> dict[str, list[str]]:
    """{chain: [`-A chain ...` lines in order]} of one table (empty if it does not exist)."""
    proc = ns.run(["iptables-save", "-t", table], check=False)
    rules: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines():
        if line.startswith("-A "):
            chain = shlex.split(line)[1]
            rules.setdefault(chain, []).append(line)
    return rules


_NFT_CHAIN = re.compile(r"^\s*chain (\S+) \{")
_NFT_HANDLE = re.compile(r"# handle (\d+)\s*$")


def nft_rule_handles(ns: Netns, table: str, family: str = "ip") -> dict[str, list[int]]:
    """{chain: [rule handles in order]} of one nftables table (iptables-nft keeps rules here)."""
    proc = ns.run(["nft", "-a", "list", "table", family, table], check=False)
    handles: dict[str, list[int]] = {}
    chain = None
    for line in proc.stdout.splitlines():
        m = _NFT_CHAIN.match(line)
        if m:
            chain = m.group(1)
            handles[chain] = []
            continue
        h = _NFT_HANDLE.search(line)
        # A base chain's `type nat hook ...` line carries no handle; a rule may well say
        # "type" (`-m addrtype --dst-type LOCAL` is `fib daddr type local`).
        if chain and h and not line.strip().startswith("type "):
            handles[chain].append(int(h.group(1)))
    return handles


def iptables_text_by_handle(ns: Netns, table: str) -> dict[int, tuple[str, int, str]]:
    """{nft handle: (chain, 1-based position, `-A ...` line)} for an iptables-nft table.

    The kernel's trace names a rule by its nftables handle; iptables-nft keeps the rules of
    a chain in the same order as the nftables chain, so the k-th handle is the k-th
    `-A CHAIN` line of `iptables-save`. Chains whose counts disagree are left out.
    """
    handles = nft_rule_handles(ns, table)
    texts = chain_rules(ns, table)
    out: dict[int, tuple[str, int, str]] = {}
    for chain, hs in handles.items():
        lines = texts.get(chain, [])
        if len(lines) != len(hs):
            continue
        for pos, (h, line) in enumerate(zip(hs, lines, strict=True), start=1):
            out[h] = (chain, pos, line)
    return out
