"""Pictures of a lab, drawn from what the kernel reports now, not from what we meant to build.

Each namespace is a box listing its interfaces with their state, MAC and addresses, then
its routing table (what `ip route` prints: most "why did my packet go there" questions are
answered by these two together); a line joins the two ends of every veth. Pods are drawn
inside their node. A notebook shows the picture as an SVG; printed outside a notebook (a
terminal, a log) it is the same facts as text, never a graph object's repr.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import graphviz

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Cluster

RT_SCOPE_LINK = 253
RTN_BLACKHOLE = 6
MAX_ROUTES = 10  # a box stays readable; the rest is one `ip route` away

COLORS = {"node": "#dbeafe", "pod": "#dcfce7", "router": "#fef3c7", "client": "#fde2e4"}


@dataclass
class _Veth:
    role: str
    ifname: str
    index: int
    peer_index: int | None
    peer_nsid: int | None


class Picture(graphviz.Graph):
    """A graphviz picture that prints as text where no SVG can be shown."""

    text: str = ""

    def __repr__(self) -> str:
        return self.text or super().__repr__()

    __str__ = __repr__


def route_text(route: dict[str, Any]) -> str:
    """One route the way `ip route` prints it."""
    if route["type"] == RTN_BLACKHOLE:
        return f"blackhole {route['dst']}"
    parts = [route["dst"]]
    if route["gateway"]:
        parts.append(f"via {route['gateway']}")
    if route["dev"]:
        parts.append(f"dev {route['dev']}")
    if route["scope"] == RT_SCOPE_LINK:
        parts.append("scope link")
    if route.get("onlink"):
        parts.append("onlink")
    return " ".join(parts)


def _routes(ns: Netns) -> list[str]:
    lines = [route_text(r) for r in ns.routes()]
    if len(lines) > MAX_ROUTES:
        lines = [*lines[:MAX_ROUTES], f"... {len(lines) - MAX_ROUTES} more (ip route)"]
    return lines


def draw_cluster(cluster: Cluster) -> graphviz.Graph:
    return draw_namespaces(cluster.namespaces, title=f"{cluster.lab} (run {cluster.prefix})")


def _color(role: str) -> str:
    if "-" in role and role.startswith("node"):
        return COLORS["pod"]
    for key, color in COLORS.items():
        if role.startswith(key):
            return color
    return "#eeeeee"


def _interfaces(ns: Netns) -> list[tuple[dict[str, Any], str]]:
    """(link, one line of facts) for each interface worth drawing."""
    links = ns.links()
    by_index = {link["index"]: link["name"] for link in links}
    out = []
    for link in links:
        if link["name"] == "lo" and not link["up"]:
            continue
        addrs = ", ".join(ns.addresses(link["name"])) or "no address"
        facts = [link["kind"] or "loopback", "up" if link["up"] else "DOWN"]
        if link["master"] in by_index:
            facts.append(f"port of {by_index[link['master']]}")
        mac = f" {link['mac']}" if link["mac"] and link["name"] != "lo" else ""
        out.append((link, f"{link['name']} ({', '.join(facts)}){mac} {addrs}"))
    return out


def _label(role: str, ns: Netns) -> tuple[str, list[_Veth], list[str]]:
    """An HTML-like table for one namespace (interfaces, then routes), its veths, its text."""
    rows = [f'<TR><TD BGCOLOR="{_color(role)}"><B>{html.escape(role)}</B></TD></TR>']
    veths, text = [], [f"{role}:"]
    for link, line in _interfaces(ns):
        port = html.escape(link["name"])
        rows.append(f'<TR><TD PORT="{port}" ALIGN="LEFT">{html.escape(line)}</TD></TR>')
        text.append(f"  {line}")
        if link["kind"] == "veth":
            veths.append(
                _Veth(role, link["name"], link["index"], link["link"], link["link_netnsid"])
            )
    routes = _routes(ns)
    if routes:
        cell = '<BR ALIGN="LEFT"/>'.join(html.escape(r) for r in routes)
        rows.append(
            f'<TR><TD ALIGN="LEFT" BGCOLOR="#f8fafc"><FONT POINT-SIZE="9">'
            f'{cell}<BR ALIGN="LEFT"/></FONT></TD></TR>'
        )
        text.extend(f"  route: {r}" for r in routes)
    table = '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">' + "".join(rows) + "</TABLE>>"
    return table, veths, text


def draw_namespaces(namespaces: dict[str, Netns], title: str = "") -> Picture:
    g = Picture(
        graph_attr={"label": title, "labelloc": "t", "fontname": "Helvetica", "rankdir": "TB"},
        node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )
    all_veths: list[_Veth] = []
    groups: dict[str, list[tuple[str, str]]] = {}
    text = [title] if title else []
    for role, ns in namespaces.items():
        if not ns.exists():
            continue
        label, veths, lines = _label(role, ns)
        all_veths.extend(veths)
        text.extend(lines)
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
        text.append(f"cable: {x.role} {x.ifname} <-> {y.role} {y.ifname}")
    g.text = "\n".join(text)
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
