"""Who sees whose address: tagged connections, watched where they arrive and where replies go.

A *tagged probe* is a real TCP connection (the client's kernel, `connect()`) from its own
source port that sends a unique line, its tag. While the probes run, packet sockets sit on the
interfaces that matter (the receiving pods' `eth0`, the client's `eth0`), so every packet
of every probe can be told apart by its source port, and the first data packet by its tag.
From that the checks read, for each probe:

- which pod received it, and the source address **the pod saw** (in the captured packet
  that carries the tag, and in the pod's own reply, which must agree);
- what came back to the client: the answer, or a SYN-ACK from an address the client never
  contacted (the reply bypassed the node that translated the request);
- what the node's conntrack holds for it: the DNAT (reply source = pod) and the SNAT
  (reply destination = the node) of one connection.

Everything here observes; nothing changes the lab.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import random
import socket
import struct
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from course.kernel import Netns
from course.whoami import PORT as SERVER_PORT
from course.whoami import Answer, tagged_connections
from grader import journey, probes

ETH_P_ALL = 0x0003
ETH_P_IP = 0x0800
TCP_FLAGS = "FSRPAUEC"  # bit 0 upwards, the letters tcpdump and Scapy print
SIOCGSTAMP = 0x8906  # linux/sockios.h: the timestamp of the last packet received
SO_TIMESTAMP = 29  # asm-generic/socket.h (Python has no name for it)
SETTLE = 0.05  # seconds to let segments still in flight arrive after the client is done


# --- capture: a packet socket opened inside each namespace ----------------------------------
@dataclass(frozen=True)
class Seen:
    """One TCP segment captured at a place, reduced to what the verdicts talk about."""

    place: str
    src: str
    dst: str
    sport: int
    dport: int
    flags: str
    payload: bytes = b""
    place_ip: str = ""  # the watched pod's own address, when known
    t: float = 0.0  # when the kernel handed it to the packet socket (seconds, wall clock)

    @property
    def inbound(self) -> bool:
        """Addressed to the watched place (unknown address: assume so)."""
        return not self.place_ip or self.dst == self.place_ip

    def describe(self) -> str:
        data = f" carrying {self.payload[:40]!r}" if self.payload else ""
        return (
            f"{self.flags} {self.src}:{self.sport} -> {self.dst}:{self.dport}{data} at {self.place}"
        )


@dataclass(frozen=True)
class Place:
    """Where to watch: a namespace, an interface in it, and a name for the verdicts."""

    label: str
    ns: Netns
    iface: str = "eth0"
    ip: str = ""  # the place's own address: tells arrivals from what it sends itself


def parse_tcp(frame: bytes) -> tuple[str, str, int, int, str, bytes] | None:
    """An Ethernet frame -> (src, dst, sport, dport, flags, payload) if it is IPv4 TCP.

    The fixed layouts of RFC 791 and RFC 9293: the IPv4 header length is the low nibble
    of its first byte (in 32-bit words), the TCP header length the high nibble of byte 12.
    """
    if len(frame) < 34 or struct.unpack("!H", frame[12:14])[0] != ETH_P_IP or frame[23] != 6:
        return None
    ip_len = (frame[14] & 0x0F) * 4
    total = struct.unpack("!H", frame[16:18])[0]
    tcp = 14 + ip_len
    if len(frame) < tcp + 20:
        return None
    sport, dport = struct.unpack("!HH", frame[tcp : tcp + 4])
    data_at = tcp + (frame[tcp + 12] >> 4) * 4
    bits = frame[tcp + 13]
    flags = "".join(c for i, c in enumerate(TCP_FLAGS) if bits & (1 << i))
    src = str(ipaddress.IPv4Address(frame[26:30]))
    dst = str(ipaddress.IPv4Address(frame[30:34]))
    return src, dst, sport, dport, flags, frame[data_at : 14 + total]


class Tap:
    """A packet socket on one interface of one namespace (what tcpdump opens).

    The socket is created by a thread that has entered the namespace, and stays bound to
    that namespace for its whole life: no process is started, nothing waits for a
    sniffer to come up, and it sees both directions from the moment it exists.
    """

    def __init__(self, place: Place) -> None:
        self.place = place
        with place.ns.entered():
            self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
            # stamp frames when captured, both ways (else an outgoing one is stamped when read)
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
            self.sock.bind((place.iface, 0))
        self.sock.setblocking(False)

    def read(self) -> list[Seen]:
        """Every TCP segment captured so far (the socket's queue, drained)."""
        seen = []
        while True:
            try:
                frame = self.sock.recv(65535)
            except BlockingIOError:
                return seen
            tcp = parse_tcp(frame)
            if tcp is not None:
                seen.append(Seen(self.place.label, *tcp, place_ip=self.place.ip, t=self._stamp()))

    def _stamp(self) -> float:
        """The kernel's receive time of the last frame read (SIOCGSTAMP, what tcpdump prints)."""
        try:
            sec, usec = struct.unpack("@ll", fcntl.ioctl(self.sock, SIOCGSTAMP, bytes(16)))
        except OSError:
            return time.time()
        return sec + usec / 1e6

    def close(self) -> None:
        self.sock.close()


@contextlib.contextmanager
def tapped(places: list[Place]) -> Iterator[list[Tap]]:
    taps: list[Tap] = []
    try:
        taps.extend(Tap(p) for p in places)
        yield taps
    finally:
        for tap in taps:
            tap.close()


def watch_while(places: list[Place], action: Callable[[], Any]) -> tuple[Any, list[Seen]]:
    """Capture at every place while `action()` runs; return its result and the segments."""
    with tapped(places) as taps:
        outcome = action()
        time.sleep(SETTLE)
        return outcome, [s for tap in taps for s in tap.read()]


def connections_from(client: Netns, *args: Any, **kwargs: Any) -> list[Answer]:
    """`course.whoami.tagged_connections` with its sockets made inside `client`.

    The calling thread enters the namespace for the duration (its sockets belong to the
    namespace they were created in); no other thread and no other process is affected.
    """
    with client.entered():
        return tagged_connections(*args, **kwargs)


# --- tagged probes --------------------------------------------------------------------------------
@dataclass
class Probe:
    """One tagged connection: what the client got back, and every segment seen of it."""

    tag: str
    sport: int
    answer: Answer
    segments: list[Seen] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.answer.pod is not None

    def at(self, place: str) -> list[Seen]:
        return [s for s in self.segments if s.place == place]

    def tagged_arrival(self) -> Seen | None:
        """The data segment carrying this probe's tag into a pod's server (port 8080)."""
        for s in self.segments:
            if (
                s.place != "client"
                and s.inbound
                and s.dport == SERVER_PORT
                and s.payload.startswith(self.tag.encode())
            ):
                return s
        return None

    def syn_arrivals(self) -> list[Seen]:
        """SYNs of this probe that reached a pod (matched by the client's source port on
        the way in; after a masquerade the port may change, see `probes_from`)."""
        return [s for s in self.segments if s.place != "client" and s.inbound and s.flags == "S"]

    def replies_at_client(self) -> list[Seen]:
        return [s for s in self.at("client") if s.dport == self.sport and "S" in s.flags]


def new_tags(count: int, prefix: str = "k8snet") -> list[str]:
    run = uuid.uuid4().hex[:6]
    return [f"{prefix}-{run}-{i:04d}" for i in range(count)]


def probes_from(
    client: Netns,
    dst: str,
    port: int,
    places: list[Place],
    count: int = 3,
    timeout: float = 1.5,
    sport_base: int | None = None,
) -> list[Probe]:
    """`count` tagged connections from `client` to dst:port, watched at `places`.

    Source ports start at a random `sport_base` unless given: a conntrack entry left by an
    earlier probe with the same addresses and ports would replay its old NAT decision.

    A segment belongs to a probe when one of its ports is the probe's source port (at
    the client, before any NAT; at a pod, when nothing changed it), or when it is part
    of a pod-side flow whose first data segment carried the probe's tag.
    """
    tags = new_tags(count)
    if sport_base is None:
        sport_base = random.randrange(20000, 60000 - count)

    def connect() -> list[Answer]:
        return connections_from(client, dst, port, tags, timeout, sport_base)

    answers, seen = watch_while(places, connect)
    by_tag = {a.tag: a for a in answers}
    probes = [Probe(t, by_tag[t].sport, by_tag[t]) for t in tags]
    by_sport = {p.sport: p for p in probes}
    flows: dict[tuple[str, str, int], Probe] = {}  # (place, peer ip, peer port) -> probe
    for s in seen:
        owner = next((p for p in probes if s.payload.startswith(p.tag.encode())), None)
        if owner is not None and s.place != "client":
            flows[(s.place, s.src, s.sport)] = owner
    for s in seen:
        if s.place == "client":  # before any NAT: the client's own source port
            owner = by_sport.get(s.sport) or by_sport.get(s.dport)
        else:  # after NAT: the flow that carried the tag, or an unchanged source port
            owner = (
                flows.get((s.place, s.src, s.sport))
                or flows.get((s.place, s.dst, s.dport))
                or by_sport.get(s.sport)
                or by_sport.get(s.dport)
            )
        if owner is not None:
            owner.segments.append(s)
    return probes


def probe_table(probes: list[Probe]) -> str:
    """One line per probe, for notebooks: the pod, the source it saw, what the client got."""
    rows = [("tag", "client port", "answered by", "source seen at the pod", "back at the client")]
    for p in probes:
        arrived = p.tagged_arrival()
        syns = p.syn_arrivals()
        seen = arrived.src if arrived else (f"{syns[0].src} (SYN only)" if syns else "-")
        where = arrived.place if arrived else (syns[0].place if syns else "no pod")
        replies = sorted({f"{s.src}:{s.sport}" for s in p.replies_at_client()})
        back = f"reply {p.answer.pod!r}" if p.connected else p.answer.error or "nothing"
        if replies:
            back += f" (SYN-ACK from {', '.join(replies)})"
        rows.append((p.tag, str(p.sport), where, seen, back))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(r[:4], widths, strict=True)) + "  " + r[4]
        for r in rows
    )


# --- conntrack ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class CtEntry:
    """One `conntrack -L` line: the original direction and the reply direction."""

    line: str
    orig_src: str
    orig_dst: str
    orig_sport: int
    orig_dport: int
    reply_src: str
    reply_dst: str
    reply_sport: int
    reply_dport: int

    @property
    def dnat(self) -> bool:
        """The reply comes from someone else than the original destination: DNAT."""
        return self.reply_src != self.orig_dst

    @property
    def snat(self) -> bool:
        """The reply goes to someone else than the original source: SNAT (masquerade)."""
        return self.reply_dst != self.orig_src


def conntrack_entries(node: Netns, *filters: str) -> list[CtEntry]:
    out = node.run(["conntrack", "-L", "-p", "tcp", *filters], check=False).stdout
    entries = []
    for line in out.splitlines():
        f: dict[str, list[str]] = {}
        for word in line.split():
            k, sep, v = word.partition("=")
            if sep:
                f.setdefault(k, []).append(v)
        if len(f.get("src", [])) < 2:
            continue
        entries.append(
            CtEntry(line, f["src"][0], f["dst"][0], int(f["sport"][0]), int(f["dport"][0]),
                    f["src"][1], f["dst"][1], int(f["sport"][1]), int(f["dport"][1]))
        )  # fmt: skip
    return entries


def entry_for(entries: list[CtEntry], client_ip: str, sport: int) -> CtEntry | None:
    return next((e for e in entries if e.orig_src == client_ip and e.orig_sport == sport), None)


def pods_by_ip(pods: Mapping[str, str]) -> dict[str, str]:
    return {ip: name for name, ip in pods.items()}


# --- many connections at once ---------------------------------------------------------------
@dataclass
class Bulk:
    """Many tagged connections: who answered, what source each pod saw, and the failures."""

    answers: list[Answer]
    seconds: float

    @property
    def answered(self) -> list[Answer]:
        return [a for a in self.answers if a.pod is not None]

    @property
    def failed(self) -> list[Answer]:
        return [a for a in self.answers if a.pod is None]

    def by_pod(self) -> dict[str, int]:
        return dict(sorted(Counter(a.pod for a in self.answered if a.pod).items()))

    def sources_seen(self) -> dict[str, int]:
        return dict(sorted(Counter(a.seen for a in self.answered if a.seen).items()))


def bulk(
    client: Netns,
    dst: str | list[str],
    port: int,
    count: int,
    sport_base: int = 41000,
    timeout: float = 3.0,
) -> Bulk:
    """`count` new tagged connections from `client` to dst:port, each answer checked."""
    tags = new_tags(count)
    t0 = time.perf_counter()
    answers = connections_from(client, dst, port, tags, timeout, sport_base)
    return Bulk(answers, time.perf_counter() - t0)


def snat_count(node: Netns, client_ip: str, node_port: int, node_ip: str) -> int:
    """How many of the client's connections to this NodePort node's conntrack rewrote
    twice: DNAT (reply from a pod) and SNAT (reply addressed to the node)."""
    entries = conntrack_entries(node, "--orig-port-dst", str(node_port))
    return sum(
        e.orig_src == client_ip and e.dnat and e.snat and e.reply_dst == node_ip for e in entries
    )


# --- the packet's journey through the NATs ------------------------------------------------------
class NatMatch(journey.Match):
    """A TCP probe's packets before *and after* a masquerade gave them a new source port.

    `grader.journey` recognises a probe's packets by the client's source port. MASQUERADE
    with `--random-fully` (kube-proxy's) picks a new one on the way out of the node, so past
    the node the packets would no longer be recognised. The node's conntrack entry names
    the new port (its reply side's destination port): `learn` reads it right after the
    probe, before the capture is sorted into hops.
    """

    def __init__(self, port: int) -> None:
        super().__init__("tcp", port=port)
        object.__setattr__(self, "ports", {port})

    def learn(self, node: Netns, dst_port: int) -> None:
        for e in conntrack_entries(node):
            if e.orig_sport == self.port and e.orig_dport == dst_port:
                self.ports.add(e.reply_dport)  # type: ignore[attr-defined]

    def leg(self, row: Any) -> str | None:
        if row.proto != "TCP":
            return None
        if row.sport in self.ports:  # type: ignore[attr-defined]
            return "request"
        if row.dport in self.ports:  # type: ignore[attr-defined]
            return "reply"
        return None


def nat_journey(
    where: Any, sender: Netns, dst: str, port: int, nat_nodes: list[Netns]
) -> journey.Journey:
    """One hand-made SYN from `sender` to dst:port, followed hop by hop through the lab
    (`where`: a check's context or a Cluster), with the addresses before and after each NAT
    (DNAT in PREROUTING, masquerade in POSTROUTING, conntrack's reverse NAT on the reply).
    `nat_nodes` are the nodes whose conntrack may hold a new source port for it."""
    match = NatMatch(random.randrange(20000, 60000))

    def run() -> probes.Observation:
        obs = probes.tcp_syn(sender, dst, port, sport=match.port)
        for node in nat_nodes:
            match.learn(node, port)
        return obs

    _, trip = journey.follow(where, run, match)
    return trip


def hairpin_journey(p: Probe, pod: str, pod_ip: str, gateway: str, node: str) -> journey.Journey:
    """The hairpin loop as pod `pod`'s eth0 saw it, drawn like a `grader.journey`.

    A hairpin frame leaves the pod and comes back in by the same veth, so the journey's
    sightings on the bridge port cannot be told apart; the pod's own eth0 can: the SYN
    out (to the Service), the SYN back in (after the node's DNAT, and its masquerade to
    `gateway`), the SYN-ACK out, and the SYN-ACK back in (conntrack's reverse NAT). The
    captured packets of the probe are all it uses.
    """
    segs = sorted(p.segments, key=lambda s: s.t)
    out_syn = next(
        (s for s in segs if s.flags == "S" and s.src == pod_ip and s.dport != SERVER_PORT), None
    )
    in_syn = next(
        (s for s in segs if s.flags == "S" and s.dst == pod_ip and s.dport == SERVER_PORT), None
    )
    out_sa = next((s for s in segs if s.flags == "SA" and s.sport == SERVER_PORT), None)
    in_sa = next(
        (s for s in segs if s.flags == "SA" and s.dport == p.sport and s.sport != SERVER_PORT), None
    )
    t0 = (out_syn or in_syn or out_sa or in_sa or Seen("", "", "", 0, 0, "")).t
    role = f"{node}-{pod}"

    def hop(s: Seen, leg: str, direction: str, prev: Seen | None) -> journey.Hop:
        h = journey.Hop(
            t_ms=(s.t - t0) * 1000, role=role, iface="eth0", direction=direction, leg=leg,
            src=s.src, dst=s.dst, ttl=None, sport=s.sport, dport=s.dport,
            summary=f"TCP {s.src}:{s.sport} > {s.dst}:{s.dport} [{s.flags}]",
        )  # fmt: skip
        if prev is not None:
            h.rewrite = _nat_note(prev, s, leg, f"{node} (cni0, back out of the same port)")
        return h

    hops = []
    if out_syn:
        hops.append(hop(out_syn, "request", "out", None))
    if in_syn:
        hops.append(hop(in_syn, "request", "in", out_syn))
    if out_sa:
        hops.append(hop(out_sa, "reply", "out", None))
    if in_sa:
        hops.append(hop(in_sa, "reply", "in", out_sa))
    trip = journey.Journey(
        f"TCP SYN from pod {pod} to its own Service (source port {p.sport})", hops
    )
    if in_sa is not None:
        trip.reached = True
        trip.outcome = (
            f"the loop closed: pod {pod} reached itself, seen from {in_syn.src if in_syn else '?'}"
        )
    elif in_syn is None:
        trip.outcome = f"the SYN never came back into pod {pod}: {node}'s bridge did not send it out of the port it came in by"
    else:
        trip.outcome = f"the SYN came back from {in_syn.src}; pod {pod}'s answer " + (
            "never passed " + node
            if out_sa is None
            else "was not turned back into the Service's address"
        )
    return trip


def _nat_note(prev: Seen, cur: Seen, leg: str, where: str) -> str:
    """How the addresses changed between two sightings of one packet."""
    notes = []
    kind = {"request": ("DNAT", "SNAT")}.get(leg, ("reverse NAT (conntrack)",) * 2)
    if (prev.dst, prev.dport) != (cur.dst, cur.dport):
        notes.append(f"{kind[0]} {prev.dst}:{prev.dport} -> {cur.dst}:{cur.dport}")
    if (prev.src, prev.sport) != (cur.src, cur.sport):
        notes.append(f"{kind[1]} {prev.src}:{prev.sport} -> {cur.src}:{cur.sport}")
    return f"{'; '.join(notes)} in {where}" if notes else ""
