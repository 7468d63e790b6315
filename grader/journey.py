"""Packet journeys: the path a probe's packet took, hop by hop, drawn after a check.

    obs, trip = journey.ping(ctx, "pod-d", "10.96.0.10")
    return journey.attach(Verdict.ok("..."), trip)

While the probe runs, tcpdump listens on every interface that is up in the run's
namespaces (`course.capture`); afterwards the packets that belong to this probe (its ICMP
id, its TCP/UDP source port, ICMP errors quoting it) are put in time order. Each sighting
is a hop: which namespace (role) and interface, in or out, MACs, IPs, TTL as seen there.
Where the addresses change between two hops, the journey says so ("DNAT 10.96.0.10:80 ->
10.244.1.3:8080 in node1"). When the packet does not arrive, the journey ends where it was
last seen and says which interface never saw it.

Cost: starting ten tcpdumps takes about 0.1 s, stopping them 0.03 s, and the pcaps are read
in a probe child (Scapy already loaded): a journey adds a few tenths of a second to a check.
"""

from __future__ import annotations

import contextlib
import html
import random
import secrets
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from course.capture import Capture, Row, Tap
from course.kernel import Netns
from grader import probes
from grader.labs import CheckContext
from grader.labs.common import Failed
from grader.verdict import Verdict

CAPTURE_DIR = Path("/tmp/k8s-netlabs/journeys")
BPF = "icmp or arp or tcp or udp"


# --- what a journey is -------------------------------------------------------------------------
@dataclass
class Hop:
    """One sighting of the probe's packet: where, which way, and its headers there."""

    t_ms: float
    role: str
    iface: str
    direction: str
    leg: str  # "request", "reply", "error" (an ICMP error about the request)
    src: str
    dst: str
    ttl: int | None
    sport: int | None = None
    dport: int | None = None
    src_mac: str = ""
    dst_mac: str = ""
    summary: str = ""
    outer: str = ""
    rewrite: str = ""  # NAT between the previous hop of this leg and this one

    @property
    def where(self) -> str:
        return f"{self.role}/{self.iface}"

    def endpoint(self, which: str) -> str:
        ip = self.src if which == "src" else self.dst
        port = self.sport if which == "src" else self.dport
        return f"{ip}:{port}" if port is not None else ip

    def text(self) -> str:
        arrow = {"out": "out", "in": "in"}.get(self.direction, "   ")
        line = f"{self.t_ms:7.3f} ms  {self.where:<16} {arrow:<3} {self.src} -> {self.dst}"
        line += f"  ttl {self.ttl}" if self.ttl is not None else ""
        if self.src_mac:
            line += f"  MAC {self.src_mac} -> {self.dst_mac}"
        if self.outer:
            line += f"  [in {self.outer}]"
        return line


@dataclass
class Journey:
    """A probe's packet, hop by hop; `outcome` is the one-line summary."""

    probe: str
    hops: list[Hop] = field(default_factory=list)
    outcome: str = ""
    reached: bool = False
    arp: list[str] = field(default_factory=list)  # unanswered ARP along the way

    def legs(self, leg: str) -> list[Hop]:
        return [h for h in self.hops if h.leg == leg]

    def text(self) -> str:
        lines = [f"journey of {self.probe}:"]
        for leg in ("request", "error", "reply"):
            hops = self.legs(leg)
            if not hops:
                continue
            if leg != "request":
                lines.append(f"  {leg}:")
            for hop in hops:
                if hop.rewrite:
                    lines.append(f"      {hop.rewrite}")
                lines.append(f"    {hop.text()}")
        if not self.hops:
            lines.append("    (no sighting on any interface of the lab)")
        lines.extend(f"  {line}" for line in self.arp)
        lines.append(f"  outcome: {self.outcome}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.text()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Journey:
        hops = [Hop(**h) for h in data.get("hops", [])]
        return cls(data["probe"], hops, data.get("outcome", ""), data.get("reached", False),
                   data.get("arp", []))  # fmt: skip

    def dot(self) -> str:
        """Graphviz source (course.draw's look): one box per sighting, arrows in time order."""
        return _dot(self)

    def _repr_html_(self) -> str:
        svg = svg_of(self.dot())
        pre = f"<pre>{html.escape(self.text())}</pre>"
        return f"<div>{svg}</div>{pre}" if svg else pre


# --- matching the probe's own packets ----------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """How to recognise the probe's packets: ICMP echo id, or TCP/UDP client port."""

    proto: str  # "icmp", "tcp" or "udp"
    ident: int | None = None
    port: int | None = None

    def leg(self, row: Row) -> str | None:
        if row.proto == "ICMP" and row.icmp_type in (3, 4, 5, 11, 12):
            q = row.quoted
            if self.proto == "icmp" and q.get("icmp_id") == self.ident:
                return "error"
            if self.proto != "icmp" and self.port in (q.get("sport"), q.get("dport")):
                return "error"
            return None
        if self.proto == "icmp":
            if row.proto == "ICMP" and row.icmp_id == self.ident:
                return {8: "request", 0: "reply"}.get(
                    -1 if row.icmp_type is None else row.icmp_type
                )
            return None
        if row.proto != self.proto.upper():
            return None
        if row.sport == self.port:
            return "request"
        if row.dport == self.port:
            return "reply"
        return None


def hops_of(rows: Sequence[Row], match: Match) -> list[Hop]:
    """The matching rows as hops, with NAT rewrites noted between hops of the same leg.

    Each leg follows one packet: when a place sees the leg a second time (a retransmission,
    the client kernel's RST after a hand-made SYN), the packet before it has ended.
    """
    hops: list[Hop] = []
    last: dict[str, Hop] = {}
    seen: dict[str, set[tuple[str, str]]] = {}
    t0: float | None = None
    for row in rows:
        leg = match.leg(row)
        if leg is None:
            continue
        places = seen.setdefault(leg, set())
        if (row.where, row.direction) in places:
            seen[leg] = {("", "closed")} | places
            continue
        if ("", "closed") in places:
            continue
        places.add((row.where, row.direction))
        t0 = row.t if t0 is None else t0
        role, _, iface = row.where.partition("/")
        hop = Hop(
            t_ms=(row.t - t0) * 1000, role=role, iface=iface, direction=row.direction, leg=leg,
            src=row.src, dst=row.dst, ttl=row.ttl, sport=row.sport, dport=row.dport,
            src_mac=row.src_mac, dst_mac=row.dst_mac, summary=row.summary, outer=row.outer,
        )  # fmt: skip
        prev = last.get(leg)
        if prev is not None:
            hop.rewrite = _rewrite(prev, hop)
        last[leg] = hop
        hops.append(hop)
    return hops


def _rewrite(prev: Hop, hop: Hop) -> str:
    """How the addresses changed between two sightings of one packet (NAT), if they did."""
    notes = []
    where = hop.role if hop.role == prev.role else f"between {prev.role} and {hop.role}"
    if (prev.dst, prev.dport) != (hop.dst, hop.dport):
        kind = "DNAT" if hop.leg == "request" else "reverse NAT (conntrack)"
        notes.append(f"{kind} {prev.endpoint('dst')} -> {hop.endpoint('dst')} in {where}")
    if (prev.src, prev.sport) != (hop.src, hop.sport):
        kind = "SNAT" if hop.leg == "request" else "reverse NAT (conntrack)"
        notes.append(f"{kind} {prev.endpoint('src')} -> {hop.endpoint('src')} in {where}")
    return "; ".join(notes)


# --- where the packets are looked for ----------------------------------------------------------
@dataclass
class Scope:
    """The run's namespaces by role, and each interface worth listening on."""

    roles: dict[str, Netns]
    owners: dict[str, tuple[str, str]] = field(default_factory=dict)  # ip -> (role, iface)
    # (role, iface, MAC); MAC None for bridge ports, where MACs do not tell the direction
    points: list[tuple[str, str, str | None]] = field(default_factory=list)
    peers: dict[str, str] = field(default_factory=dict)  # "role/iface" of both veth ends
    bridges: set[str] = field(default_factory=set)  # "role/iface" of bridge devices

    @classmethod
    def of(cls, where: CheckContext | Mapping[str, Netns] | Any) -> Scope:
        if isinstance(where, CheckContext):
            cut = len(where.prefix) + 1
            roles = {name[cut:]: Netns(name) for name in where.namespaces}
        elif hasattr(where, "namespaces"):  # a course.topology.Cluster
            roles = dict(where.namespaces)
        else:
            roles = dict(where)
        return cls({r: ns for r, ns in roles.items() if ns.exists()})

    def survey(self, only: Sequence[str] | None = None, loopback: bool = False) -> Scope:
        """Every interface that is up (lo only when asked), who owns each address, veth peers.

        One link dump and one address dump per namespace (a few ms for a whole lab).
        """
        veths: list[tuple[str, str, int, int | None, int | None]] = []
        for role, ns in self.roles.items():
            if only is not None and role not in only:
                continue
            try:
                links = ns.links()
                names = {link["index"]: link["name"] for link in links}
                for msg in ns.ipr.get_addr(family=socket.AF_INET):
                    ifname = names.get(msg["index"], "?")
                    self.owners.setdefault(msg.get_attr("IFA_ADDRESS"), (role, ifname))
            except RuntimeError:
                continue  # a namespace deleted meanwhile: nothing to listen on there
            finally:
                ns.close()
            for link in links:
                if link["up"] and (loopback or link["name"] != "lo"):
                    mac = None if link["master"] else link["mac"]
                    self.points.append((role, link["name"], mac))
                if link["kind"] == "bridge":
                    self.bridges.add(f"{role}/{link['name']}")
                if link["kind"] == "veth":
                    veths.append(
                        (role, link["name"], link["index"], link["link"], link["link_netnsid"])
                    )
        self._pair(veths)
        return self

    def _pair(self, veths: list[tuple[str, str, int, int | None, int | None]]) -> None:
        """Veth ends name each other's ifindex; ties (same indexes on two nodes) are broken
        by the namespace id the end reports for its peer, as `course.draw` does."""
        for role, name, index, peer, nsid in veths:
            found = [(r, n) for r, n, i, p, _ in veths if r != role and i == peer and p == index]
            if len(found) > 1:
                ns = self.roles[role]
                found = [(r, n) for r, n in found if ns.nsid_of(self.roles[r]) == nsid]
                ns.close()
            if len(found) == 1:
                self.peers[f"{role}/{name}"] = "/".join(found[0])

    def name(self, role: str) -> str:
        return self.roles[role].name


def _child_reader(
    paths: Sequence[tuple[str, Path, str | None]], t0: float | None, noise: bool
) -> list[Row]:
    """Parse the pcaps in a child of the probes' forkserver, where Scapy is loaded already.

    Importing Scapy in the grading process would cost about a second; a forked child that
    has it costs a few tens of milliseconds. No namespace is entered: files need none.
    """
    from course.capture import read_rows_to

    ctx = probes._context()
    recv, send = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=read_rows_to, args=(send, list(paths), t0, noise), daemon=True)
    proc.start()
    send.close()
    try:
        if not recv.poll(10):
            raise probes.ProbeError("reading the journey's pcaps took over 10 s")
        status, value = recv.recv()
    except EOFError:
        raise probes.ProbeError("the process reading the journey's pcaps died") from None
    finally:
        recv.close()
        if proc.is_alive():
            proc.kill()
        proc.join(2)
    if status != "ok":
        raise probes.ProbeError(f"reading the journey's pcaps failed: {value}")
    return list(value)


# --- following a probe -------------------------------------------------------------------------
def follow(
    where: CheckContext | Mapping[str, Netns] | Any,
    probe: Callable[[], probes.Observation],
    match: Match,
    *,
    only: Sequence[str] | None = None,
    loopback: bool = False,
) -> tuple[probes.Observation, Journey]:
    """Run `probe()` while listening on the run's interfaces; return its result and journey.

    `only` limits the roles listened on (fewer tcpdumps on big labs).
    """
    scope = Scope.of(where).survey(only, loopback)
    token = secrets.token_hex(4)  # journeys may run at the same time on the same interfaces
    taps = [
        Tap(
            role,
            scope.roles[role],
            iface,
            CAPTURE_DIR / f"{token}-{scope.name(role)}-{iface}.pcap",
            BPF,
        )
        for role, iface, _ in scope.points
    ]
    for tap, (_, _, mac) in zip(taps, scope.points, strict=True):
        tap.mac = mac
    cap = Capture(taps, noise=False, reader=_child_reader)
    with contextlib.ExitStack() as stack:
        for tap in taps:  # the pcaps are read once and never kept, even when the probe fails
            stack.callback(tap.path.unlink, missing_ok=True)
        if taps:
            cap.start(count=2000)
            stack.callback(cap.stop_taps)
        obs = probe()
        if taps:
            cap.stop()
    directions(cap.rows, scope.peers)
    rows = sorted(cap.rows, key=lambda row: (row.t, _rank(row, scope.bridges)))
    return obs, build(obs, rows, match, scope)


def _rank(row: Row, bridges: set[str]) -> int:
    """Order of sightings with the same timestamp (a bridge hands the same skb up or down):
    a frame enters a port before its bridge device, and leaves the bridge before a port."""
    on_bridge = row.where in bridges
    return int(on_bridge) if row.direction == "in" else int(not on_bridge)


def directions(rows: Sequence[Row], peers: Mapping[str, str]) -> None:
    """Give bridge-port sightings a direction from the other end of their veth.

    A frame leaving one end of a veth enters the other end, unchanged: if the other end
    knows (a pod's eth0 reads it from the MACs), this end is the opposite; if neither end
    knows, the earlier sighting is the one that sent it.
    """
    by_print: dict[int, list[Row]] = {}
    for row in rows:
        by_print.setdefault(row.fingerprint, []).append(row)
    for row in rows:
        peer = peers.get(row.where)
        if row.direction or peer is None:
            continue
        twins = [
            r for r in by_print[row.fingerprint] if r.where == peer and abs(r.t - row.t) < 0.05
        ]
        if not twins:
            continue
        twin = min(twins, key=lambda r: abs(r.t - row.t))
        if twin.direction:
            row.direction = "in" if twin.direction == "out" else "out"
        else:
            row.direction = "out" if row.t <= twin.t else "in"


def build(obs: probes.Observation, rows: Sequence[Row], match: Match, scope: Scope) -> Journey:
    """Hops from the rows, then the outcome: reached and back, or where it stopped."""
    trip = Journey(obs.sent, hops_of(rows, match))
    request, replies, errors = trip.legs("request"), trip.legs("reply"), trip.legs("error")
    trip.arp = _unanswered_arp(rows, trip.hops, obs.dst)
    if not request:
        why = f": {obs.error}" if obs.error else ""
        trip.outcome = f"the packet never left {_role(scope, obs.ns)}{why}"
        return trip
    final = request[-1]
    owner = scope.owners.get(final.dst)
    arrived = owner is not None and any(h.where == "/".join(owner) for h in request)
    if arrived and replies:
        trip.reached = True
        trip.outcome = (
            f"reached {owner[0]} ({final.dst}); the reply came back to {replies[-1].role}"  # type: ignore[index]
        )
    elif arrived:
        trip.outcome = f"reached {owner[0]} ({final.dst}), but no reply was seen"  # type: ignore[index]
    else:
        trip.outcome = f"last seen: {final.where} ({final.direction or 'seen'})"
        if owner is not None:
            trip.outcome += f"; no packet on {owner[0]} {owner[1]}, which owns {final.dst}"
        else:
            trip.outcome += f"; no namespace of this lab owns {final.dst}"
    if errors:
        e = errors[0]
        trip.outcome += f"; {e.role} sent an ICMP error: {e.summary.rsplit(' ttl', 1)[0]}"
    return trip


def _role(scope: Scope, ns_name: str) -> str:
    return next((r for r, ns in scope.roles.items() if ns.name == ns_name), ns_name)


def _unanswered_arp(rows: Sequence[Row], hops: Sequence[Hop], dst: str) -> list[str]:
    """'who has X?' asked on the way and never answered: the classic silent stop."""
    ips = {dst} | {h.dst for h in hops} | {h.src for h in hops}
    asked: dict[str, str] = {}
    answered = set()
    for row in rows:
        if row.proto != "ARP":
            continue
        if row.summary.startswith("who-has") and row.dst in ips:
            asked.setdefault(row.dst, row.where)
        elif "is-at" in row.summary:
            answered.add(row.src)
    return [f"{where} asked ARP 'who has {ip}?': no answer" for ip, where in asked.items()
            if ip not in answered]  # fmt: skip


# --- probes with their journey ----------------------------------------------------------------
def _ns(where: CheckContext | Mapping[str, Netns] | Any, role: str) -> str:
    if isinstance(where, CheckContext):
        return where.ns(role)
    roles = where.namespaces if hasattr(where, "namespaces") else where
    return str(roles[role].name)


def ping(
    where: CheckContext | Mapping[str, Netns] | Any, role: str, dst: str, **kwargs: Any
) -> tuple[probes.Observation, Journey]:
    """`probes.ping` from `role`, followed through the lab."""
    ident = random.randrange(1, 0xFFFF)
    only = kwargs.pop("only", None)
    run = lambda: probes.ping(_ns(where, role), dst, ident=ident, **kwargs)  # noqa: E731
    return follow(
        where, run, Match("icmp", ident=ident), only=only, loopback=dst.startswith("127.")
    )


def tcp_syn(
    where: CheckContext | Mapping[str, Netns] | Any, role: str, dst: str, port: int, **kw: Any
) -> tuple[probes.Observation, Journey]:
    """`probes.tcp_syn` from `role`, followed through the lab."""
    sport = random.randrange(20000, 60000)
    only = kw.pop("only", None)
    run = lambda: probes.tcp_syn(_ns(where, role), dst, port, sport=sport, **kw)  # noqa: E731
    return follow(where, run, Match("tcp", port=sport), only=only)


def udp(
    where: CheckContext | Mapping[str, Netns] | Any, role: str, dst: str, port: int, **kw: Any
) -> tuple[probes.Observation, Journey]:
    """`probes.udp` from `role`, followed through the lab."""
    sport = random.randrange(20000, 60000)
    only = kw.pop("only", None)
    run = lambda: probes.udp(_ns(where, role), dst, port, sport=sport, **kw)  # noqa: E731
    return follow(where, run, Match("udp", port=sport), only=only)


# --- showing it --------------------------------------------------------------------------------
def attach(target: Verdict | Failed, trip: Journey) -> Any:
    """Put the journey on a verdict (or on the verdict a `Failed` carries); returns `target`."""
    verdict = target.verdict if isinstance(target, Failed) else target
    verdict.journey = trip.text()
    verdict.journey_dot = trip.dot()
    return target


def _dot(trip: Journey) -> str:
    color = {"request": "#2563eb", "reply": "#16a34a", "error": "#dc2626"}
    lines = [
        "digraph journey {",
        '  graph [rankdir=LR, fontname=Helvetica, labelloc=t, label="'
        + _esc(f"journey of {trip.probe}")
        + '"];',
        "  node [shape=box, style=rounded, fontname=Helvetica, fontsize=9];",
        "  edge [fontname=Helvetica, fontsize=8];",
    ]
    prev = None
    for i, hop in enumerate(trip.hops):
        label = f"{hop.role}\\n{hop.iface} ({hop.direction or '?'})\\n{hop.src} -> {hop.dst}"
        label += f"\\nttl {hop.ttl}" if hop.ttl is not None else ""
        label += f"\\n{hop.src_mac} -> {hop.dst_mac}" if hop.src_mac else ""
        lines.append(f'  h{i} [label="{_esc(label)}", color="{color[hop.leg]}"];')
        if prev is not None:
            note = hop.rewrite
            attrs = f'color="{color[hop.leg]}"'
            if note:
                attrs += f', label="{_esc(note)}", fontcolor="#b91c1c"'
            lines.append(f"  h{prev} -> h{i} [{attrs}];")
        prev = i
    end_color = "#16a34a" if trip.reached else "#dc2626"
    lines.append(f'  end [label="{_esc(trip.outcome)}", color="{end_color}", shape=note];')
    if prev is not None:
        lines.append(f'  h{prev} -> end [style=dashed, color="{end_color}"];')
    lines.append("}")
    return "\n".join(lines)


def _esc(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\\\\n", "\\n")


def svg_of(dot: str) -> str:
    """The picture as SVG text (empty when graphviz's `dot` is missing: show the text then)."""
    if not dot:
        return ""
    try:
        import graphviz

        return str(graphviz.Source(dot).pipe(format="svg").decode())
    except Exception:
        return ""


def show(verdict: Verdict) -> None:
    """In a notebook: draw the verdict's journey (the text is already in the verdict)."""
    if not getattr(verdict, "journey_dot", ""):
        return
    svg = svg_of(verdict.journey_dot)
    if not svg:
        return
    with contextlib.suppress(ImportError):
        from IPython.display import SVG, display

        display(SVG(svg))
