"""Helpers that read iptables-restore text the way kube-proxy's own unit tests do.

`sort_iptables_rules` mirrors `sortIPTablesRules` in upstream proxier_test.go: tables by
name, KUBE-NODEPORTS then KUBE-SERVICES then other KUBE-* chains alphabetically, and
the rules of KUBE-SERVICES / KUBE-NODEPORTS stably sorted by the Service named in their
comment (the nat "must be the last rule" line stays last). Rules keep their relative
order otherwise, so the comparison does not depend on the order Services are written in.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field


@dataclass
class Table:
    name: str
    chains: list[str] = field(default_factory=list)
    rules: dict[str, list[str]] = field(default_factory=dict)
    deleted: list[str] = field(default_factory=list)


def parse_dump(text: str) -> list[Table]:
    tables: list[Table] = []
    for line in text.strip().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or line == "COMMIT":
            continue
        if line.startswith("*"):
            tables.append(Table(line[1:]))
        elif line.startswith(":"):
            name = line[1:].split()[0]
            tables[-1].chains.append(name)
            tables[-1].rules.setdefault(name, [])
        elif line.startswith("-X "):
            tables[-1].deleted.append(line)
        elif line.startswith("-A "):
            chain = line.split()[1]
            tables[-1].rules.setdefault(chain, []).append(line)
        else:
            raise ValueError(f"unexpected line {line!r}")
    return tables


def comment_of(rule: str) -> str | None:
    words = shlex.split(rule)
    if "--comment" in words:
        return words[words.index("--comment") + 1]
    return None


def _service_of(rule: str) -> str:
    comment = comment_of(rule) or ""
    for i, ch in enumerate(comment):
        if ch in " :":
            return comment[:i]
    return comment


def _chain_key(name: str) -> tuple[int, str]:
    if name == "KUBE-NODEPORTS":
        return (0, "")
    if name == "KUBE-SERVICES":
        return (1, "")
    return (2, name) if name.startswith("KUBE-") else (3, name)


def _rule_key(rule: str) -> tuple[int, str]:
    comment = comment_of(rule) or ""
    if "must be the last rule" in comment:
        return (1, "")
    return (0, _service_of(rule))


def sort_iptables_rules(text: str) -> str:
    out: list[str] = []
    for table in sorted(parse_dump(text), key=lambda t: t.name):
        out.append(f"*{table.name}")
        chains = sorted(table.chains, key=_chain_key)
        out += [f":{c} - [0:0]" for c in chains]
        for chain in chains:
            rules = table.rules.get(chain, [])
            if chain in ("KUBE-SERVICES", "KUBE-NODEPORTS"):
                rules = sorted(rules, key=_rule_key)
            out += rules
        out += table.deleted
        out.append("COMMIT")
    return "\n".join(out) + "\n"


def check_rule_jumps(text: str) -> list[str]:
    """checkIPTablesRuleJumps: jumps to undeclared/empty chains, declared-but-unused chains."""
    problems = []
    builtin = {"ACCEPT", "DROP", "REJECT", "RETURN", "DNAT", "SNAT", "MASQUERADE", "MARK"}
    top = {
        "KUBE-SERVICES",
        "KUBE-NODEPORTS",
        "KUBE-EXTERNAL-SERVICES",
        "KUBE-FORWARD",
        "KUBE-POSTROUTING",
        "KUBE-PROXY-FIREWALL",
        "KUBE-FIREWALL",
        "KUBE-MARK-MASQ",
    }
    for table in parse_dump(text):
        deleted = {d.split()[1] for d in table.deleted}
        jumped = set()
        for rules in table.rules.values():
            for rule in rules:
                words = rule.split()
                if "-j" in words:
                    jumped.add(words[words.index("-j") + 1])
        for target in sorted(jumped - builtin):
            if target not in table.chains:
                problems.append(f"{table.name}: jump to undeclared {target}")
            elif not table.rules.get(target) and target != "KUBE-NODEPORTS":
                problems.append(f"{table.name}: jump to empty {target}")
        for chain in table.chains:
            if chain not in jumped and chain not in top and chain not in deleted:
                problems.append(f"{table.name}: {chain} declared but never used")
    return problems
