"""Pictures of a lab, drawn from what the kernel reports now, not from what we meant to build.

Each namespace is a box listing its interfaces with their state and addresses; a line
joins the two ends of every veth; a dashed line joins a bridge port to its bridge. Pods are
drawn inside their node. A notebook shows the returned graphviz object as an SVG.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING

import graphviz

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Cluster

COLORS = {"node": "#dbeafe", "pod": "#dcfce7", "router": "#fef3c7", "client": "#fde2e4"}


@dataclass
class _Veth:
    role: str
    ifname: str
    index: int
    peer_index: int | None
    peer_nsid: int | None


def draw_cluster(cluster: Cluster) -> graphviz.Graph:
    return draw_namespaces(cluster.namespaces, title=f"{cluster.lab} (run {cluster.prefix})")


def _color(role: str) -> str:
    if "-" in role and role.startswith("node"):
        return COLORS["pod"]
    for key, color in COLORS.items():
        if role.startswith(key):
            return color
    return "#eeeeee"


def _label(role: str, ns: Netns) -> tuple[str, list[_Veth]]:
    """An HTML-like table for one namespace (one row per interface), plus its veths."""
    links = ns.links()
    by_index = {link["index"]: link["name"] for link in links}
    rows = [f'<TR><TD BGCOLOR="{_color(role)}"><B>{html.escape(role)}</B></TD></TR>']
    veths = []
    for link in links:
        if link["name"] == "lo" and not link["up"]:
            continue
        addrs = ", ".join(ns.addresses(link["name"])) or "no address"
        facts = [link["kind"] or "loopback", "up" if link["up"] else "DOWN"]
        if link["master"] in by_index:
            facts.append(f"port of {by_index[link['master']]}")
        text = f"{link['name']} ({', '.join(facts)}) {addrs}"
        port = html.escape(link["name"])
        rows.append(f'<TR><TD PORT="{port}" ALIGN="LEFT">{html.escape(text)}</TD></TR>')
        if link["kind"] == "veth":
            veths.append(
                _Veth(role, link["name"], link["index"], link["link"], link["link_netnsid"])
            )
    table = '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">' + "".join(rows) + "</TABLE>>"
    return table, veths


def draw_namespaces(namespaces: dict[str, Netns], title: str = "") -> graphviz.Graph:
    g = graphviz.Graph(
        graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica", "rankdir": "TB"},
        node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    all_veths: list[_Veth] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    for role, ns in namespaces.items():
        if not ns.exists():
            continue
        label, veths = _label(role, ns)
        all_veths.extend(veths)
        group = role.split("-")[0] if role.startswith("node") else ""
        groups.setdefault(group, []).append((role, label))
    for group, members in groups.items():
        target = graphviz.Graph(name=f"cluster_{group}") if group else g
        if group:
            target.attr(label=group, style="rounded", color="#94a3b8")
        for role, label in members:
            target.node(role, label)
        if group:
            g.subgraph(target)
    for x, y in _veth_pairs(namespaces, all_veths):
        g.edge(f"{x.role}:{x.ifname}", f"{y.role}:{y.ifname}")
    return g


def _veth_pairs(namespaces: dict[str, Netns], veths: list[_Veth]) -> list[tuple[_Veth, _Veth]]:
    """Join veth ends: the peer is interface `peer_index` in the namespace `peer_nsid` names."""
    by_role_index = {(v.role, v.index): v for v in veths}
    pairs, seen = [], set()
    for x in veths:
        if x.peer_nsid is None or (x.role, x.index) in seen:
            continue
        for role, ns in namespaces.items():
            y = by_role_index.get((role, x.peer_index or -1))
            if y and role != x.role and namespaces[x.role].nsid_of(ns) == x.peer_nsid:
                pairs.append((x, y))
                seen.update({(x.role, x.index), (y.role, y.index)})
                break
    return pairs
