"""How pods cross nodes, drawn from what the kernels (and BIRDs) hold now.

`course.draw` shows every interface and route of every namespace: right for one node,
too much for the question of lab 03, "how does a packet for another node's pod get
there?". This picture answers only that, for whichever way the lab is built at the moment:

- one box per node: its pods, its node IP, `flannel.1` (VXLAN id, port, MTU) if it has
  one, the routes that lead to *other* nodes' pods (`via ... dev flannel.1 onlink` for
  the overlay, `via <node IP> proto bird` for BGP, `via <node IP>` for host-gw), the pod
  addresses it answers ARP for on the node network (the underlay's "ENI secondary
  addresses"), and its BIRD's BGP sessions;
- the node network: the switches each node's `eth0` is plugged into, and the router;
- lines between nodes for what connects them beyond the wire: a VXLAN tunnel where a
  node's FDB sends VTEP MACs to another node's IP (an arrow for each direction that
  exists, so a one-sided or misdirected tunnel shows), a BGP session with its state.

Printed outside a notebook it is the same facts as text (`course.draw.Picture`).
"""

from __future__ import annotations

import html
import ipaddress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from course import addressing
from course.draw import Picture, route_text
from course.podnet import bgp, vxlan

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Cluster, Node

CLUSTER = ipaddress.ip_network(addressing.CLUSTER_CIDR)
COLORS = {"node": "#dbeafe", "switch": "#f1f5f9", "router": "#fef3c7"}


@dataclass
class NodeFacts:
    """What one node contributes to crossing nodes, read from its kernel and its BIRD."""

    name: str
    ip: str
    pods: list[str] = field(default_factory=list)
    vtep: str = ""
    routes: list[str] = field(default_factory=list)
    proxied: list[str] = field(default_factory=list)
    sessions: dict[str, str] = field(default_factory=dict)  # peer IP -> BGP state
    tunnels: list[str] = field(default_factory=list)  # node IPs its FDB sends frames to

    def lines(self) -> list[str]:
        out = [f"eth0 {self.ip}", *[f"pod {p}" for p in self.pods]]
        if self.vtep:
            out.append(self.vtep)
        out += [f"route {r}" for r in self.routes] or ["no route to other nodes' pods"]
        out += [f"answers ARP for {ip} (proxy)" for ip in self.proxied]
        out += [f"BGP to {peer}: {state}" for peer, state in self.sessions.items()]
        return out


def _pods(cluster: Cluster, node: Node) -> list[str]:
    """`name ip` of every pod namespace of the node, including ones a learner made."""
    found = []
    for role, ns in cluster.namespaces.items():
        if role.startswith(f"{node.name}-") and ns.exists():
            addrs = ns.addresses("eth0") if ns.has_link("eth0") else []
            ips = ", ".join(a.split("/")[0] for a in addrs) or "no address"
            found.append(f"{role.split('-', 1)[1]} {ips}")
    return found


def _foreign_routes(ns: Netns, own_cidr: str) -> list[str]:
    """Routes to pod addresses outside the node's own range (how it reaches other nodes)."""
    own = ipaddress.ip_network(own_cidr)
    lines = []
    for r in ns.routes():
        if r["dst"] == "default":
            continue
        net = ipaddress.ip_network(r["dst"])
        if net.subnet_of(CLUSTER) and not net.subnet_of(own):
            text = route_text(r)
            lines.append(text + (" proto bird" if r.get("proto") == bgp.RTPROT_BIRD else ""))
    return lines


def _vtep(ns: Netns) -> tuple[str, list[str]]:
    info = vxlan.device_info(ns)
    if info is None:
        return "", []
    state = "up" if info["up"] else "DOWN"
    text = f"{vxlan.DEVICE} VXLAN id {info['vni']} dstport {info['port']} mtu {info['mtu']} {state}"
    return text, sorted({e["dst"] for e in ns.fdb(vxlan.DEVICE) if e["dst"]})


def _sessions(cluster: Cluster, node: Node) -> dict[str, str]:
    bird = bgp.Bird.of(cluster.prefix, node.name, node.ns)
    if not bird.running():
        return {}
    out = {}
    for name, proto in bird.protocols().items():
        if proto.get("proto") == "BGP" and name.startswith("Mesh_"):
            out[name[len("Mesh_") :].replace("_", ".")] = proto.get("info") or proto["state"]
    return out


def facts(cluster: Cluster, node: Node) -> NodeFacts:
    f = NodeFacts(node.name, node.ip, pods=_pods(cluster, node))
    if not node.ns.exists():
        return f
    f.vtep, f.tunnels = _vtep(node.ns)
    f.routes = _foreign_routes(node.ns, node.pod_cidr)
    if node.ns.has_link("eth0"):
        f.proxied = node.ns.proxy_neighbours("eth0")
    f.sessions = _sessions(cluster, node)
    return f


def _box(title: str, lines: list[str], color: str) -> str:
    rows = [f'<TR><TD BGCOLOR="{color}"><B>{html.escape(title)}</B></TD></TR>']
    rows += [f'<TR><TD ALIGN="LEFT">{html.escape(line)}</TD></TR>' for line in lines]
    return '<<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0">' + "".join(rows) + "</TABLE>>"


def draw_crossnode(cluster: Cluster, title: str = "") -> Picture:
    """The picture described above, for the cluster as it is now."""
    g = Picture(
        graph_attr={"label": title or f"{cluster.lab}: across nodes", "labelloc": "t",
                    "fontname": "Helvetica", "rankdir": "TB", "nodesep": "0.6"},
        node_attr={"shape": "plaintext", "fontname": "Helvetica", "fontsize": "10"},
        edge_attr={"fontname": "Helvetica", "fontsize": "9"},
    )  # fmt: skip
    text = [str(g.graph_attr["label"])]
    nodes = [facts(cluster, n) for n in cluster.nodes]
    for n in nodes:
        g.node(n.name, _box(n.name, n.lines(), COLORS["node"]))
        text += [f"{n.name}:", *[f"  {line}" for line in n.lines()]]
    _wire(cluster, g, text)
    for (x, y), label, attrs in _links(nodes):
        g.edge(x, y, label=label, constraint="false", **attrs)
        text.append(f"{x} <-> {y}: " + label.replace("\n", "; "))
    g.text = "\n".join(text)
    return g


def _links(nodes: list[NodeFacts]) -> list[tuple[tuple[str, str], str, dict[str, str]]]:
    """One line per pair of nodes: its VXLAN tunnel directions and its BGP session.

    One line, not one per fact, so that labels never sit on top of each other. A tunnel
    is drawn in the directions whose FDB entries exist (an arrow each way when both do);
    an FDB entry that sends frames to an IP no node has is drawn to that IP.
    """
    by_ip = {n.ip: n.name for n in nodes}
    pairs: dict[tuple[str, str], dict[str, object]] = {}

    def pair(a: str, b: str) -> dict[str, object]:
        key = (a, b) if a <= b else (b, a)
        return pairs.setdefault(key, {"ways": set(), "vtep": "", "bgp": ""})

    for n in nodes:
        for dst in n.tunnels:
            peer = by_ip.get(dst, dst)
            link = pair(n.name, peer)
            link["ways"].add((n.name, peer))  # type: ignore[attr-defined]
            link["vtep"] = n.vtep.split(" mtu")[0].replace(f"{vxlan.DEVICE} ", "")
        for peer_ip, state in n.sessions.items():
            link = pair(n.name, by_ip.get(peer_ip, peer_ip))
            if not link["bgp"] or state != "Established":  # Established needs both ends
                link["bgp"] = state
    out = []
    for (a, b), link in pairs.items():
        ways: set[tuple[str, str]] = link["ways"]  # type: ignore[assignment]
        labels, attrs = [], {"dir": "none", "style": "dotted"}
        if ways:
            one_way = f" ({a} -> {b} only)" if ways == {(a, b)} else ""
            one_way = f" ({b} -> {a} only)" if ways == {(b, a)} else one_way
            labels.append(f"tunnel: {link['vtep']}{one_way}")
            direction = "both" if len(ways) == 2 else ("forward" if (a, b) in ways else "back")
            attrs = {"dir": direction, "style": "dashed", "color": "#7c3aed"}
        if link["bgp"]:
            labels.append(f"iBGP {link['bgp']}")
            if not ways:
                ok = link["bgp"] == "Established"
                attrs["color"] = "#16a34a" if ok else "#dc2626"
        out.append(((a, b), "\n".join(labels), attrs))
    return out


def _wire(cluster: Cluster, g: Picture, text: list[str]) -> None:
    """Switches of the node network, the router, and which node is plugged in where."""
    switches = []
    if cluster.underlay is not None:
        switches.append(("underlay", addressing.underlay_cidr(1), 1))
    if cluster.underlay2 is not None:
        switches.append(("underlay2", addressing.underlay_cidr(2), 2))
    for name, cidr, subnet in switches:
        g.node(name, _box(f"switch {name}", [cidr], COLORS["switch"]))
        for node in cluster.nodes:
            if node.subnet == subnet:
                g.edge(node.name, name, label="eth0", dir="none")
                text.append(f"cable: {node.name} eth0 <-> switch {name} ({cidr})")
    if cluster.router is not None:
        ns = cluster.router.ns
        routes = [route_text(r) for r in ns.routes()] if ns.exists() else []
        g.node("router", _box("router", routes or ["no routes"], COLORS["router"]))
        text += ["router:", *[f"  route {r}" for r in routes]]
        for name, _cidr, _subnet in switches:
            g.edge(name, "router", dir="none")
            text.append(f"cable: router <-> switch {name}")
