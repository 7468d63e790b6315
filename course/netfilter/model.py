"""Where netfilter runs each iptables table, for IPv4: hooks, priorities and the three paths.

The kernel has five places ("hooks") where a packet meets netfilter:

    PREROUTING   every packet that arrives, before the kernel decides where it goes
    INPUT        after routing chose "this host": just before a local socket gets it
    FORWARD      after routing chose "another host": a router's (or a node's) job
    OUTPUT       every packet a local process sends (after the output route lookup)
    POSTROUTING  every packet about to leave through an interface

At each hook several *tables* register a chain, each with a priority; lower runs first.
Conntrack registers too (at -200 where packets enter, and "confirm" at the very end), and
NAT is special: the nat table's chains are walked only for the first packet of a
connection (conntrack state NEW); every later packet, and every reply, gets the same
translation from the conntrack entry without walking any nat chain.

Priorities are the kernel's `NF_IP_PRI_*` (include/uapi/linux/netfilter_ipv4.h). One
backend difference matters: iptables-nft (the `iptables` on Debian 12, Ubuntu 22.04 and
most Kubernetes nodes today) registers the security table at 150, the legacy ip_tables
module at 50; so on INPUT the nat table (100) runs *before* security with iptables-nft and
*after* it with legacy iptables.

    >>> [f"{t} {c}" for t, c in path("forward")]
    ['raw PREROUTING', 'mangle PREROUTING', 'nat PREROUTING', 'mangle FORWARD', ...]
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Backend = Literal["nft", "legacy"]
PathKind = Literal["local-in", "forward", "local-out"]
PATHS: tuple[PathKind, ...] = ("local-in", "forward", "local-out")
PATH_TITLES: dict[str, str] = {
    "local-in": "to a local process (INPUT path)",
    "forward": "forwarded through this host (FORWARD path)",
    "local-out": "sent by a local process (OUTPUT path)",
}


class Hook(StrEnum):
    PREROUTING = "PREROUTING"
    INPUT = "INPUT"
    FORWARD = "FORWARD"
    OUTPUT = "OUTPUT"
    POSTROUTING = "POSTROUTING"


HOOKS: tuple[Hook, ...] = tuple(Hook)
TABLES: tuple[str, ...] = ("raw", "mangle", "nat", "filter", "security")

# Which built-in chains each table has (the hooks it registers at).
BUILTIN_CHAINS: dict[str, tuple[Hook, ...]] = {
    "raw": (Hook.PREROUTING, Hook.OUTPUT),
    "mangle": (Hook.PREROUTING, Hook.INPUT, Hook.FORWARD, Hook.OUTPUT, Hook.POSTROUTING),
    # DNAT where packets enter (PREROUTING, OUTPUT), SNAT where they leave (POSTROUTING,
    # INPUT): the destination must be final before routing, the source after it.
    "nat": (Hook.PREROUTING, Hook.INPUT, Hook.OUTPUT, Hook.POSTROUTING),
    "filter": (Hook.INPUT, Hook.FORWARD, Hook.OUTPUT),
    "security": (Hook.INPUT, Hook.FORWARD, Hook.OUTPUT),
}

# NF_IP_PRI_* values.
PRI_DEFRAG = -400
PRI_RAW = -300
PRI_CONNTRACK = -200
PRI_MANGLE = -150
PRI_NAT_DST = -100
PRI_FILTER = 0
PRI_SECURITY_LEGACY = 50
PRI_SECURITY_NFT = 150  # iptables-nft's choice (iptables/nft.c), not the kernel's 50
PRI_NAT_SRC = 100
PRI_CONNTRACK_CONFIRM = 2**31 - 1


def table_priority(table: str, hook: Hook, backend: Backend = "nft") -> int:
    """The priority `table` registers its `hook` chain with (lower runs first)."""
    if table == "nat":
        return PRI_NAT_DST if hook in (Hook.PREROUTING, Hook.OUTPUT) else PRI_NAT_SRC
    if table == "security":
        return PRI_SECURITY_NFT if backend == "nft" else PRI_SECURITY_LEGACY
    return {"raw": PRI_RAW, "mangle": PRI_MANGLE, "filter": PRI_FILTER}[table]


@dataclass(frozen=True)
class Stage:
    """One thing that happens to a packet at a hook, in priority order.

    `table` is set for an iptables chain; `kind` names the non-table stages: conntrack
    lookup ("conntrack"), defragmentation ("defrag") and conntrack confirmation
    ("confirm": the entry becomes part of the table only now, after every chain said yes).
    """

    hook: Hook
    priority: int
    kind: str  # "table", "conntrack", "defrag", "confirm"
    table: str | None = None

    @property
    def name(self) -> str:
        return f"{self.table} {self.hook}" if self.table else f"{self.kind} ({self.hook})"


def hook_stages(hook: Hook, backend: Backend = "nft") -> list[Stage]:
    """Everything registered at `hook`, first to last."""
    stages = [
        Stage(hook, table_priority(t, hook, backend), "table", t)
        for t in TABLES
        if hook in BUILTIN_CHAINS[t]
    ]
    if hook in (Hook.PREROUTING, Hook.OUTPUT):
        stages += [Stage(hook, PRI_DEFRAG, "defrag"), Stage(hook, PRI_CONNTRACK, "conntrack")]
    if hook in (Hook.INPUT, Hook.POSTROUTING):
        stages.append(Stage(hook, PRI_CONNTRACK_CONFIRM, "confirm"))
    return sorted(stages, key=lambda s: s.priority)


@dataclass(frozen=True)
class Point:
    """A place on a path: a hook (with its stages) or a decision the kernel takes there.

    kind: "hook", "route" (a routing decision), "socket" (a local process sends or
    receives), "wire" (the packet arrives or leaves on an interface).
    """

    kind: str
    label: str
    hook: Hook | None = None


# The three paths, as the kernel code runs them (net/ipv4/ip_input.c, ip_forward.c,
# ip_output.c): the routing decision sits between PREROUTING and INPUT/FORWARD, and
# *before* OUTPUT for locally generated packets (a socket needs a route to pick a source
# address); OUTPUT can re-route when mangle or nat changed the destination.
_POINTS: dict[str, tuple[Point, ...]] = {
    "local-in": (
        Point("wire", "arrives on an interface"),
        Point("hook", "PREROUTING", Hook.PREROUTING),
        Point("route", "routing decision: for this host"),
        Point("hook", "INPUT", Hook.INPUT),
        Point("socket", "local process"),
    ),
    "forward": (
        Point("wire", "arrives on an interface"),
        Point("hook", "PREROUTING", Hook.PREROUTING),
        Point("route", "routing decision: for another host"),
        Point("hook", "FORWARD", Hook.FORWARD),
        Point("hook", "POSTROUTING", Hook.POSTROUTING),
        Point("wire", "leaves by an interface"),
    ),
    "local-out": (
        Point("socket", "local process"),
        Point("route", "routing decision: output route"),
        Point("hook", "OUTPUT", Hook.OUTPUT),
        Point("hook", "POSTROUTING", Hook.POSTROUTING),
        Point("wire", "leaves by an interface"),
    ),
}


def points(kind: PathKind) -> tuple[Point, ...]:
    """The hooks and decisions on one path, in the order the packet meets them."""
    try:
        return _POINTS[kind]
    except KeyError:
        raise ValueError(f"unknown path {kind!r}; paths are {', '.join(PATHS)}") from None


def hooks(kind: PathKind) -> list[Hook]:
    return [p.hook for p in points(kind) if p.hook is not None]


def stages(
    kind: PathKind, *, new: bool = True, conntrack: bool = True, backend: Backend = "nft"
) -> list[Stage]:
    """Every stage on the path, including conntrack, in order.

    Args:
        new: the packet starts a connection (conntrack state NEW). Only then are nat
            chains walked; later packets and replies skip them.
        conntrack: conntrack is active in this namespace. It is switched on per namespace
            by the first rule that needs it (a NAT target, `-m conntrack`, `-m state`);
            without it the nat chains are never walked at all.
        backend: "nft" (iptables-nft) or "legacy" (ip_tables): where security sits.
    """
    walk_nat = new and conntrack
    out: list[Stage] = []
    for hook in hooks(kind):
        for st in hook_stages(hook, backend):
            if st.table == "nat" and not walk_nat:
                continue
            if st.kind != "table" and not conntrack:
                continue
            out.append(st)
    return out


def path(
    kind: PathKind, *, new: bool = True, conntrack: bool = True, backend: Backend = "nft"
) -> list[tuple[str, str]]:
    """The (table, chain) pairs a packet on `kind` traverses, in order.

    This is what a trace shows when every table has its built-in chains (see
    `course.netfilter.iptables.declare_builtin_chains`); the tracer and this function are
    tested against each other on all three paths.
    """
    return [
        (st.table, str(st.hook))
        for st in stages(kind, new=new, conntrack=conntrack, backend=backend)
        if st.table is not None
    ]


def explain(kind: PathKind, *, new: bool = True, backend: Backend = "nft") -> str:
    """The path as a few readable lines: hooks, their tables, and the decisions between."""
    lines = [f"{PATH_TITLES[kind]}, {'first packet' if new else 'later packet'}:"]
    for p in points(kind):
        if p.hook is None:
            lines.append(f"  -- {p.label}")
            continue
        names = [
            st.table if st.table else f"({st.kind})"
            for st in stages(kind, new=new, backend=backend)
            if st.hook == p.hook
        ]
        lines.append(f"  {p.hook:<12} " + " -> ".join(names))
    return "\n".join(lines)


# Where each NAT target may stand (kernel: xt_nat.c, xt_MASQUERADE.c, xt_REDIRECT.c).
# iptables asks the kernel, which refuses anything else with EINVAL; the reason only goes
# to the kernel log (dmesg).
NAT_TARGET_CHAINS: dict[str, tuple[Hook, ...]] = {
    "DNAT": (Hook.PREROUTING, Hook.OUTPUT),
    "REDIRECT": (Hook.PREROUTING, Hook.OUTPUT),
    "SNAT": (Hook.POSTROUTING, Hook.INPUT),
    "MASQUERADE": (Hook.POSTROUTING,),
}


def target_allowed(target: str, table: str, chain: str) -> bool:
    """Would the kernel accept `-t table -A chain -j target` (for the NAT targets)?"""
    allowed = NAT_TARGET_CHAINS.get(target)
    if allowed is None:
        return True
    return table == "nat" and chain in allowed
