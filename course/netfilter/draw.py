"""Pictures of netfilter: the five hooks with their tables in priority order, the routing
decisions between them, and one packet's walk (traced or predicted) drawn on top.

    draw_model()                 # the map: every hook, table and decision
    draw_model("forward")        # the model's forwarded path highlighted
    trace.draw()                 # what a real packet did (same map, numbered steps)

Each hook is a box listing its tables first to last. On a walk, the tables the packet met
are coloured and numbered in the order it met them, a table where a rule matched shows the
rule's target (DNAT to ..., DROP), a table that dropped the packet is red, and the arrows
between hooks that the packet took are bold.
"""

from __future__ import annotations

import html
import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import graphviz

from course.netfilter.model import HOOKS, Backend, Hook, PathKind, hook_stages, path

if TYPE_CHECKING:
    from course.netfilter.tracer import Trace, TracedPacket

WALK = "#2563eb"
MET, DROPPED, SKIPPED = "#bfdbfe", "#fca5a5", "#ffffff"
HOOK_FILL = {
    Hook.PREROUTING: "#eef2ff",
    Hook.INPUT: "#ecfdf5",
    Hook.FORWARD: "#fff7ed",
    Hook.OUTPUT: "#fdf4ff",
    Hook.POSTROUTING: "#f0f9ff",
}
IN, OUT, PROC = "wire_in", "wire_out", "process"
ROUTE_IN, ROUTE_OUT = "route_in", "route_out"
# The arrows of the map: (from, to, label). Hooks are node ids named after the hook.
EDGES = [
    (IN, "PREROUTING", ""),
    ("PREROUTING", ROUTE_IN, ""),
    (ROUTE_IN, "INPUT", "this host"),
    (ROUTE_IN, "FORWARD", "another host"),
    ("INPUT", PROC, ""),
    (PROC, ROUTE_OUT, ""),
    (ROUTE_OUT, "OUTPUT", ""),
    ("OUTPUT", "POSTROUTING", ""),
    ("FORWARD", "POSTROUTING", ""),
    ("POSTROUTING", OUT, ""),
]


@dataclass
class Walk:
    """What to draw on the map: numbered tables, notes, and the arrows taken."""

    numbers: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # (hook, table)
    notes: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    dropped: tuple[str, str] | None = None
    arrows: set[tuple[str, str]] = field(default_factory=set)


def _hook_label(hook: Hook, backend: Backend, walk: Walk) -> str:
    rows = [f'<TR><TD COLSPAN="2" BGCOLOR="{HOOK_FILL[hook]}"><B>{hook}</B></TD></TR>']
    for st in hook_stages(hook, backend):
        if st.table is None and st.kind != "conntrack":
            continue
        name = st.table or "(conntrack)"
        key = (str(hook), name)
        nums = walk.numbers.get(key, [])
        fill = DROPPED if walk.dropped == key else MET if nums else SKIPPED
        num = ",".join(str(n) for n in nums)
        note = "<BR/>".join(html.escape(n) for n in walk.notes.get(key, [])[:3])
        text = f"<B>{name}</B>" if nums else name
        if note:
            text += f'<BR/><FONT POINT-SIZE="8">{note}</FONT>'
        rows.append(
            f'<TR><TD WIDTH="18" BGCOLOR="{fill}">{_number(num)}</TD>'
            f'<TD ALIGN="LEFT" BGCOLOR="{fill}">{text}</TD></TR>'
        )
    return (
        '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="3">'
        + "".join(rows)
        + "</TABLE>>"
    )


def _number(num: str) -> str:
    return f'<FONT COLOR="{WALK}"><B>{num}</B></FONT>' if num else " "


def _map(backend: Backend, walk: Walk, title: str = "") -> graphviz.Digraph:
    g = graphviz.Digraph(
        "netfilter",
        graph_attr={"rankdir": "LR", "fontname": "Helvetica", "nodesep": "0.3",
                    "ranksep": "0.35", "label": title, "labelloc": "t", "fontsize": "12"},
        node_attr={"fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"color": "#9ca3af", "fontname": "Helvetica", "fontsize": "9"},
    )  # fmt: skip
    grey = {"style": "filled", "fillcolor": "#f3f4f6"}
    g.node(IN, "packet arrives\n(an interface)", shape="cds", **grey)
    g.node(OUT, "packet leaves\n(an interface)", shape="cds", **grey)
    g.node(PROC, "local process\n(a socket)", shape="box3d", style="filled", fillcolor="#fef9c3")
    yellow = {"shape": "diamond", "style": "filled", "fillcolor": "#fde68a"}
    g.node(ROUTE_IN, "routing\ndecision", **yellow)
    g.node(ROUTE_OUT, "output\nrouting", **yellow)
    for hook in HOOKS:
        g.node(str(hook), _hook_label(hook, backend, walk), shape="plain")
    for a, b, label in EDGES:
        taken = (a, b) in walk.arrows
        style = {"color": WALK, "penwidth": "2.5", "fontcolor": WALK} if taken else {}
        g.edge(a, b, label=label, **style)
    return g


def _arrows(hooks_in_order: list[str], ends: tuple[str, str] | None) -> set[tuple[str, str]]:
    """The map's arrows between consecutive places of a walk (with the routing diamonds)."""
    places: list[str] = []
    for hook in hooks_in_order:
        if not places:
            places += [IN] if hook == "PREROUTING" else [PROC, ROUTE_OUT]
        elif places[-1] == "PREROUTING":
            places.append(ROUTE_IN)
        places.append(hook)
    if ends is None and places:
        places.append(PROC if places[-1] == "INPUT" else OUT if places[-1] == "POSTROUTING" else "")
    return {(a, b) for a, b in itertools.pairwise(places) if b}


def _walk_of_chains(chains: list[tuple[str, str]]) -> Walk:
    walk = Walk()
    hooks: list[str] = []
    for n, (table, hook) in enumerate(chains, start=1):
        walk.numbers.setdefault((hook, table), []).append(n)
        if not hooks or hooks[-1] != hook:
            hooks.append(hook)
    walk.arrows = _arrows(hooks, None)
    return walk


def walk_of_packet(packet: TracedPacket) -> Walk:
    """Number the tables a traced packet met; note the targets of the rules that matched."""
    walk = _walk_of_chains(packet.chains())
    for st in packet.steps:
        key = (st.hook, st.table)
        if st.kind == "rule" and not st.verdict.startswith(("jump", "goto", "continue")):
            words = (st.rule or st.nft).split()
            target = " ".join(words[words.index("-j") + 1 :][:3]) if "-j" in words else ""
            walk.notes.setdefault(key, []).append((target or st.verdict)[:44])
        if st.verdict == "drop" and walk.dropped is None:
            walk.dropped = key
    if walk.dropped:
        hooks = list(dict.fromkeys(h for _, h in packet.chains()))
        walk.arrows = _arrows(hooks, walk.dropped)
    return walk


def draw_model(
    kind: PathKind | None = None, *, new: bool = True, backend: Backend = "nft"
) -> graphviz.Digraph:
    """The hooks and tables; with `kind`, the model's path for it numbered on top."""
    if kind is None:
        return _map(backend, Walk(), "netfilter hooks and iptables tables (IPv4)")
    which = "first packet" if new else "later packet"
    return _map(backend, _walk_of_chains(path(kind, new=new, backend=backend)),
                f"the model: {kind}, {which} of a connection")  # fmt: skip


def draw_trace(trace: Trace, packet: int = 0, backend: Backend = "nft") -> graphviz.Digraph:
    """The map with packet `packet` of a trace walked on it."""
    if not trace.packets:
        return _map(backend, Walk(), f"trace in {trace.namespace}: no packet seen")
    pk = trace.packets[packet]
    title = f"trace in {trace.namespace}, packet {packet + 1}: {pk.first.describe()}"
    return _map(backend, walk_of_packet(pk), title)
