"""Trace real packets through netfilter, from the kernel's own trace events.

    from course.netfilter import Match, trace
    t = trace(node.ns, lambda: send_my_packet(), Match("tcp", src="10.244.1.2", sport=40001))
    print(t.render())       # every (table, chain, rule, verdict) each packet met, in order
    t.path()                # [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ...]
    t.draw()                # the hooks and tables, with the packet's walk drawn on them

How it works, and why this way:

1. A monitor starts inside the namespace: `nft -a monitor` (nftables' event stream:
   ruleset changes and trace events). Trace events reach only listeners in the packet's
   own namespace, so nothing outside the lab sees them. We wait until its netlink socket
   has joined the event groups (visible in /proc/PID/net/netlink).
2. A tiny nftables table of our own (`k8snet_trace_<pid>_<n>`) is loaded. Its chains sit
   at priority -350 on the prerouting and output hooks, before every iptables table (raw
   is -300), and its rules set `meta nftrace` only on packets that match the probe (its
   protocol, addresses, ports or ICMP id). A second pair at -199, right after conntrack,
   marks every later packet of the same connection, even when NAT rewrote its ports. A
   third set marks the packet again at INPUT, FORWARD and POSTROUTING, because a packet
   that came in over a bridge (a pod's packet on cni0, with br_netfilter) re-enters IP
   without its trace flag. The monitor printing "add table" proves it listens.
3. The caller's `send()` runs: a Scapy probe, a kernel connection, anything.
4. The table is deleted (always, in a `finally`); the monitor printing "delete table"
   proves every trace event emitted before has been read. The monitor is stopped.

Why not `iptables -t raw -j TRACE` with `xtables-monitor --trace` (also verified here)?
That puts a rule into the learner's own raw table, where it shows up in `iptables-save`
and counters, is lost by an `iptables -t raw -F`, and hides every raw rule before it. And
xtables-monitor exits on the first native nftables rule it cannot translate back into
iptables syntax (it did on `icmp id` here). Our table touches none of the learner's
tables, goes away in one atomic delete, and the iptables text of every rule hit is looked
up afterwards by its handle (`course.netfilter.iptables.iptables_text_by_handle`).

Only one trace runs in a namespace at a time (a lock on its /run/netns file), because every
monitor in a namespace sees every traced packet there.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import itertools
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from course.kernel import KernelError, Netns
from course.netfilter.iptables import iptables_text_by_handle
from course.netfilter.model import HOOKS, PathKind

TABLE_PREFIX = "k8snet_trace_"
READY_TIMEOUT = 3.0
_counter = itertools.count(1)
_live_tables: dict[str, Netns] = {}  # our tables not yet deleted (deleted again at exit)


# --- what to trace --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Match:
    """Which packets to trace: the probe's own, recognised before any table sees them.

    proto: "tcp", "udp" or "icmp". src/dst/sport/dport describe the first packet as it
    arrives (or leaves) *before* any NAT. With `sport` (TCP/UDP) or `icmp_id` set, replies
    and every later packet of the connection are traced too (`connection=True`).
    `expr` replaces everything with your own nftables match expression.
    """

    proto: str = "tcp"
    src: str | None = None
    dst: str | None = None
    sport: int | None = None
    dport: int | None = None
    icmp_id: int | None = None
    connection: bool = True
    expr: str | None = None

    def _forward(self) -> str:
        parts = []
        if self.src:
            parts.append(f"ip saddr {self.src}")
        if self.dst:
            parts.append(f"ip daddr {self.dst}")
        if self.proto == "icmp":
            parts.append("ip protocol icmp")
            if self.icmp_id is not None:
                parts.append(f"icmp id {self.icmp_id}")
        else:
            parts.append(f"ip protocol {self.proto}")
            if self.sport is not None:
                parts.append(f"{self.proto} sport {self.sport}")
            if self.dport is not None:
                parts.append(f"{self.proto} dport {self.dport}")
        return " ".join(parts)

    def rules(self) -> dict[str, list[str]]:
        """nftables match expressions per chain of the trace table: first, then ct stage."""
        if self.expr:
            return {"first": [self.expr], "ct": []}
        first, ct = [self._forward()], []
        if self.connection and self.proto == "icmp" and self.icmp_id is not None:
            first.append(f"icmp id {self.icmp_id}")
        if self.connection and self.proto != "icmp" and self.sport is not None:
            first.append(f"{self.proto} dport {self.sport}")  # replies, before any NAT
            origin = f"ct original ip saddr {self.src} " if self.src else ""
            ct.append(
                f"{origin}ct original protocol {self.proto} ct original proto-src {self.sport}"
            )
        return {"first": first, "ct": ct}

    def owns(self, packet: TracedPacket) -> bool:
        """Is this traced packet one of this match's (its probe, or a reply to it)?"""
        seen = packet.first
        if self.expr:
            return True
        if self.proto == "icmp":
            return self.icmp_id is None or seen.ident == self.icmp_id
        if self.sport is None:
            return seen.dst == self.dst and seen.dport == self.dport
        return self.sport in (seen.sport, seen.dport)

    def describe(self) -> str:
        if self.expr:
            return f"packets matching `{self.expr}`"
        src = f"{self.src or '*'}" + (f":{self.sport}" if self.sport else "")
        dst = f"{self.dst or '*'}" + (f":{self.dport}" if self.dport else "")
        ident = f" id {self.icmp_id}" if self.icmp_id is not None else ""
        tail = ", and the rest of its connection" if self.connection else ""
        return f"{self.proto.upper()}{ident} {src} -> {dst}{tail}"


# --- what a trace holds ---------------------------------------------------------------------------
_TCP_FLAGS = ("FIN", "SYN", "RST", "PSH", "ACK", "URG")


@dataclass(frozen=True)
class Seen:
    """The packet as one chain saw it (addresses change under NAT, interfaces after routing)."""

    iif: str | None = None
    oif: str | None = None
    src: str | None = None
    dst: str | None = None
    proto: str | None = None
    sport: int | None = None
    dport: int | None = None
    flags: str = ""
    ttl: int | None = None
    ipid: int | None = None
    ident: int | None = None  # ICMP echo id

    def describe(self) -> str:
        src = f"{self.src}:{self.sport}" if self.sport is not None else f"{self.src}"
        dst = f"{self.dst}:{self.dport}" if self.dport is not None else f"{self.dst}"
        flags = f" [{self.flags}]" if self.flags else ""
        where = "".join(
            [f" in {self.iif}" if self.iif else "", f" out {self.oif}" if self.oif else ""]
        )
        return f"{(self.proto or 'IP').upper()} {src} -> {dst}{flags}{where}"


@dataclass(frozen=True)
class Step:
    """One trace event: a packet met `rule` (or the chain's policy) in `table chain`.

    `hook` is the built-in chain the walk is in (a jump to KUBE-SERVICES from nat
    PREROUTING has chain "KUBE-SERVICES" and hook "PREROUTING"). `kind` is "rule",
    "policy" (the packet fell off the end of a built-in chain) or "return".
    """

    table: str
    chain: str
    hook: str
    kind: str
    verdict: str
    rule: str = ""
    nft: str = ""
    handle: int | None = None
    position: int | None = None
    seen: Seen = field(default_factory=Seen)

    def describe(self) -> str:
        if self.kind == "policy":
            return f"{self.table} {self.chain}: no rule matched, policy {self.verdict.upper()}"
        what = self.rule or self.nft or "(rule)"
        pos = f"rule {self.position} " if self.position else ""
        return f"{self.table} {self.chain}: {pos}{what}  => {self.verdict}"


@dataclass
class TracedPacket:
    """Every step one packet took through the namespace's netfilter, in order."""

    trace_id: str
    steps: list[Step] = field(default_factory=list)
    first_seen: Seen | None = None

    @property
    def first(self) -> Seen:
        """The packet as it entered (or left the socket), before any table changed it."""
        if self.first_seen is not None:
            return self.first_seen
        return self.steps[0].seen if self.steps else Seen()

    def chains(self) -> list[tuple[str, str]]:
        """The built-in (table, chain) pairs walked, in order: the packet's path."""
        out: list[tuple[str, str]] = []
        for st in self.steps:
            key = (st.table, st.hook)
            if not out or out[-1] != key:
                out.append(key)
        return out

    @property
    def verdict(self) -> str:
        """ "drop" if some chain dropped it, else "accept" (it went on)."""
        return "drop" if any(s.verdict == "drop" for s in self.steps) else "accept"

    def where_dropped(self) -> Step | None:
        return next((s for s in self.steps if s.verdict == "drop"), None)

    def kind(self) -> PathKind | None:
        """Which of the three paths this packet took, read from the hooks it met."""
        hooks = {st.hook for st in self.steps}
        if "FORWARD" in hooks:
            return "forward"
        if "INPUT" in hooks:
            return "local-in"
        if "OUTPUT" in hooks:
            return "local-out"
        return None

    def nat_steps(self) -> list[Step]:
        return [s for s in self.steps if s.table == "nat"]


@dataclass
class Trace:
    """The result of `trace()`: the packets seen, and what the caller's `send()` returned."""

    namespace: str
    match: Match
    packets: list[TracedPacket]
    result: Any = None
    elapsed_ms: float = 0.0
    raw: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # ms per phase

    def only(self, match: Match, result: Any = None) -> Trace:
        """The part of a trace of several probes that belongs to one of them."""
        mine = [p for p in self.packets if match.owns(p)]
        return Trace(self.namespace, match, mine, result, self.elapsed_ms, self.raw, self.timings)

    def path(self, packet: int = 0) -> list[tuple[str, str]]:
        """The (table, chain) pairs packet `packet` (default the first) walked, in order."""
        return self.packets[packet].chains() if len(self.packets) > packet else []

    def hit(self, table: str, chain: str) -> list[Step]:
        """Every rule step in `table chain` (user chains included), over all packets."""
        return [s for p in self.packets for s in p.steps if s.table == table and s.chain == chain]

    def render(self) -> str:
        """A readable listing: per packet, its chains in order, rules hit and verdicts."""
        from course.netfilter.render import render_trace

        return render_trace(self)

    def draw(self, packet: int = 0) -> Any:
        """A graphviz picture: hooks, tables, routing decisions, packet `packet` walked on them."""
        from course.netfilter.draw import draw_trace

        return draw_trace(self, packet)

    def __str__(self) -> str:
        return self.render()

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:  # IPython shows the listing
        p.text(self.render())


# --- parsing nft monitor's trace lines --------------------------------------------------------------
_LINE = re.compile(r"^trace id (\S+) (\S+) (\S+) (\S+) (.*)$")
_RULE = re.compile(r"^rule (.*?)(?: # handle (\d+))? \(verdict (.+)\)$")
_UNKNOWN = re.compile(r"^unknown rule handle (\d+) \(verdict (.+)\)$")


def _seen(text: str) -> Seen:
    """Read the fields of a `packet:` line that the listing talks about."""

    def grab(pattern: str) -> str | None:
        m = re.search(pattern, text)
        return m.group(1) if m else None

    proto = next((p for p in ("tcp", "udp", "icmp") if f" {p} " in f" {text} "), None)
    sport = grab(rf"{proto} sport (\d+)") if proto in ("tcp", "udp") else None
    dport = grab(rf"{proto} dport (\d+)") if proto in ("tcp", "udp") else None
    flags = ""
    if proto == "tcp":
        flags = _tcp_flags(grab(r"tcp flags == (\S+)") or "")
    elif proto == "icmp":
        flags = grab(r"icmp type (\S+)") or ""
    ttl = grab(r"ip ttl (\d+)")
    ipid = grab(r"ip id (\d+)")
    ident = grab(r"icmp id (\d+)") if proto == "icmp" else None
    return Seen(
        iif=grab(r'iif "([^"]+)"'),
        oif=grab(r'oif "([^"]+)"'),
        src=grab(r"ip saddr (\S+)"),
        dst=grab(r"ip daddr (\S+)"),
        proto=proto,
        sport=int(sport) if sport else None,
        dport=int(dport) if dport else None,
        flags=flags,
        ttl=int(ttl) if ttl else None,
        ipid=int(ipid) if ipid else None,
        ident=int(ident) if ident else None,
    )


def _tcp_flags(text: str) -> str:
    """`syn`, `0x12`, `fin | ack` -> `SYN`, `SYN,ACK`, `FIN,ACK`."""
    if not text:
        return ""
    if text.startswith("0x"):
        bits = int(text, 16)
        return ",".join(name for i, name in enumerate(_TCP_FLAGS) if bits & (1 << i))
    return ",".join(part.strip().upper() for part in text.split("|"))


@dataclass(eq=False)
class _Walk:
    """Parser state for one packet: its steps so far and the chain it is in."""

    packet: TracedPacket
    hook: str = ""
    seen: Seen = field(default_factory=Seen)
    last_own: str = ""  # our own chain ("first_in", "ct_out", ...) of the last event
    last_table: str = ""


def _identity(seen: Seen) -> tuple[object, ...]:
    """What stays the same for one packet across hooks: NAT before POSTROUTING changes
    only the destination, and forwarding changes neither the source nor the IP id."""
    return (seen.proto, seen.src, seen.sport, seen.ident, seen.ipid)


def _walk_for(
    walks: dict[str, _Walk], packets: list[TracedPacket], tid: str, chain: str, seen: Seen
) -> _Walk:
    """Which packet an event of our own table (always opened by a `packet:` line) is.

    Trace ids are per packet but recur over time, and an id changes when the kernel
    re-enters a packet (loopback, or br_netfilter handing a bridged packet to IP). So:
    our "first" chains (-350 on prerouting/output) always start a new packet; a "ct"
    chain (-199) continues the id's packet if it just came from our first chain or raw;
    an "again" chain (input/forward/postrouting) continues the latest packet with the
    same identity (protocol, source, source port or ICMP id, IP id).
    """
    cur = walks.get(tid)
    same = cur is not None and _identity(cur.packet.first) == _identity(seen)
    after_first = cur is not None and (cur.last_own.startswith("first") or cur.last_table == "raw")
    if chain.startswith("ct") and same and after_first and cur is not None:
        return cur
    if chain.startswith("again"):
        if same and cur is not None:
            return cur
        for walk in reversed(list(dict.fromkeys(walks.values()))):
            if _identity(walk.packet.first) == _identity(seen):
                walks[tid] = walk
                return walk
    walk = _Walk(TracedPacket(tid, first_seen=seen))
    packets.append(walk.packet)
    walks[tid] = walk
    return walk


def parse_trace_lines(lines: list[str], own_table: str) -> list[TracedPacket]:
    """Turn `nft monitor` trace lines into packets and steps (our own table's left out)."""
    packets: list[TracedPacket] = []
    walks: dict[str, _Walk] = {}
    for line in lines:
        m = _LINE.match(line.strip())
        if not m:
            continue
        tid, _family, table, chain, rest = m.groups()
        walk = walks.get(tid)
        if table == own_table:
            if rest.startswith("packet:"):
                seen = _seen(rest)
                walk = _walk_for(walks, packets, tid, chain, seen)
                walk.seen = seen
            if walk is not None:
                walk.last_own = chain
            continue
        if walk is None:  # an event of a packet we did not mark (another tracer): skip
            continue
        walk.last_own, walk.last_table = "", table
        if rest.startswith("packet:"):
            walk.seen = _seen(rest)
            walk.hook = chain if chain in HOOKS else walk.hook
            continue
        step = _step(table, chain, walk, rest)
        if step is not None:
            walk.packet.steps.append(step)
    return packets


def _step(table: str, chain: str, walk: _Walk, rest: str) -> Step | None:
    hook = walk.hook or chain
    if rest.startswith("policy "):
        return Step(table, chain, hook, "policy", rest.split()[1], seen=walk.seen)
    if rest.startswith("verdict "):
        verdict = rest.removeprefix("verdict ").strip()
        if verdict == "continue":  # fell off the end of a user chain: back to the caller
            return None
        return Step(table, chain, hook, "return", verdict, seen=walk.seen)
    m = _RULE.match(rest.strip())
    if m:
        text, handle, verdict = m.groups()
        return Step(table, chain, hook, "rule", verdict, nft=text,
                    handle=int(handle) if handle else None, seen=walk.seen)  # fmt: skip
    m = _UNKNOWN.match(rest.strip())
    if m:
        return Step(table, chain, hook, "rule", m.group(2), handle=int(m.group(1)), seen=walk.seen)
    return None


# --- running a trace ------------------------------------------------------------------------------
class TraceError(KernelError):
    """The tracer itself could not run (the monitor did not start, nft refused the table)."""


class _Monitor:
    """`nft -a monitor` inside the namespace, its lines collected by a thread."""

    def __init__(self, ns: Netns) -> None:
        argv = ["nsenter", f"--net={ns.path}", "--", "stdbuf", "-oL", "nft", "-a", "monitor"]
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, bufsize=1
        )
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def wait_subscribed(self, timeout: float) -> None:
        """Wait until nft has joined the netfilter event groups (its netlink socket shows them).

        `nft monitor` prints nothing when it starts listening. /proc/PID/net/netlink lists
        the netlink sockets of the namespace PID is in; nft's own socket (port id = its pid,
        which nsenter and stdbuf kept by exec'ing) gets a non-zero group mask once it
        subscribed. Only then can an event no longer be missed.
        """
        deadline = time.monotonic() + timeout
        path = f"/proc/{self.proc.pid}/net/netlink"
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                for line in Path(path).read_text().splitlines()[1:]:
                    cols = line.split()
                    if cols[1:3] == ["12", str(self.proc.pid)] and int(cols[3], 16):
                        return
            if self.proc.poll() is not None:
                break
            time.sleep(0.002)
        raise TraceError("nft monitor did not start listening (is nftables installed?)")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> int:
        """Index of the first line matching `pattern`; TraceError if none comes in time."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, line in enumerate(self.lines):
                    if rx.search(line):
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._thread.is_alive()):
                    raise TraceError(f"nft monitor never printed /{pattern}/")
                self._cond.wait(left)

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._thread.join(timeout=2)


def _table_payload(name: str, matches: Sequence[Match]) -> str:
    """Our trace table: marks at -350 where packets enter, after conntrack, and again later.

    The "again" chains (INPUT, FORWARD, POSTROUTING) exist because of br_netfilter: a
    packet a pod sends arrives on the node's bridge (cni0), whose netfilter glue runs the
    PREROUTING chains and then hands the packet to IP *without its trace flag* (seen on
    6.x kernels: filter FORWARD counted the SYN, the trace showed no FORWARD step).
    """
    rules: dict[str, list[str]] = {"first": [], "ct": []}
    for m in matches:
        for key, exprs in m.rules().items():
            rules[key] += exprs
    later = rules["first"] + rules["ct"]
    chains = [
        ("first_in", "prerouting", -350, rules["first"]),
        ("first_out", "output", -350, rules["first"]),
        ("ct_in", "prerouting", -199, rules["ct"]),
        ("ct_out", "output", -199, rules["ct"]),
        ("again_input", "input", -350, later),
        ("again_forward", "forward", -350, later),
        ("again_post", "postrouting", -350, later),
    ]
    body = []
    for chain, hook, prio, exprs in chains:
        if not exprs:
            continue
        lines = [f"    type filter hook {hook} priority {prio}; policy accept;"]
        lines += [f"    {e} meta nftrace set 1" for e in exprs]
        body.append(f"  chain {chain} {{\n" + "\n".join(lines) + "\n  }")
    return f"table ip {name} {{\n" + "\n".join(body) + "\n}\n"


@contextlib.contextmanager
def _namespace_lock(ns: Netns) -> Iterator[None]:
    """One trace at a time per namespace: a lock on the namespace's own /run/netns file.

    (It goes away with the namespace, so no lock file is ever left behind.)
    """
    with open(ns.path, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def trace_tables(ns: Netns) -> list[str]:
    """Names of tracer tables present in `ns` (none, unless a trace is running now)."""
    proc = ns.run(["nft", "list", "tables"], check=False)
    return [
        line.split()[-1]
        for line in proc.stdout.splitlines()
        if line.split()[-1:] and line.split()[-1].startswith(TABLE_PREFIX)
    ]


def _pid_of(table: str) -> int | None:
    parts = table.removeprefix(TABLE_PREFIX).split("_")
    return int(parts[0]) if parts and parts[0].isdigit() else None


def remove_stale_traces(ns: Netns, everything: bool = False) -> list[str]:
    """Delete tracer tables whose process is gone (or all of them, with `everything`)."""
    removed = []
    for table in trace_tables(ns):
        pid = _pid_of(table)
        alive = pid is not None and Path(f"/proc/{pid}").exists()
        if everything or not alive:
            ns.run(["nft", "delete", "table", "ip", table], check=False)
            removed.append(table)
    return removed


def _delete_live_tables() -> None:
    for name, ns in list(_live_tables.items()):
        with contextlib.suppress(Exception):
            ns.run(["nft", "delete", "table", "ip", name], check=False, timeout=5)
        _live_tables.pop(name, None)


atexit.register(_delete_live_tables)


def trace(
    ns: Netns | str,
    send: Callable[[], Any],
    match: Match | Sequence[Match],
    *,
    settle: float = 0.0,
) -> Trace:
    """Trace the packets `send()` causes in namespace `ns`, scoped to `match`.

    Args:
        ns: the namespace whose netfilter to watch (a Netns or its name), e.g. a node.
        send: makes the packets (a probe from another namespace, a connection, ...). Its
            return value is kept as `Trace.result`. It runs while tracing is on.
        match: which packets to trace (see `Match`); everything else is left alone. A
            list of matches traces several probes at once (`Trace.only(m)` splits them).
        settle: seconds to keep tracing after `send()` returns (late replies).

    Returns a `Trace` with every traced packet's steps in kernel order. Tracing is off
    again when this returns or raises: the trace table is deleted in a `finally`.
    """
    ns = ns if isinstance(ns, Netns) else Netns(ns)
    if not ns.exists():
        raise TraceError(f"network namespace {ns.name!r} does not exist")
    matches = [match] if isinstance(match, Match) else list(match)
    name = f"{TABLE_PREFIX}{os.getpid()}_{next(_counter)}"
    clock = _Clock()
    with _namespace_lock(ns):
        remove_stale_traces(ns)
        monitor = _Monitor(ns)
        try:
            monitor.wait_subscribed(READY_TIMEOUT)
            clock.lap("monitor")
            ns.apply_nft(_table_payload(name, matches))
            _live_tables[name] = ns
            start = monitor.wait_for(rf"^add table ip {name}\b", READY_TIMEOUT)
            clock.lap("enable")
            try:
                result = send()
                if settle:
                    time.sleep(settle)
                clock.lap("send")
            finally:
                ns.run(["nft", "delete", "table", "ip", name], check=False)
                _live_tables.pop(name, None)
            end = monitor.wait_for(rf"^delete table ip {name}\b", READY_TIMEOUT)
            clock.lap("disable")
        finally:
            monitor.stop()
    raw = monitor.lines[start:end]
    packets = parse_trace_lines(raw, name)
    _name_rules(ns, packets)
    clock.lap("collect")
    return Trace(ns.name, matches[0], packets, result, clock.total(), raw, clock.laps)


class _Clock:
    """Milliseconds spent in each phase of a trace (the benchmark reports them)."""

    def __init__(self) -> None:
        self.t0 = self.last = time.perf_counter()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps[name] = (now - self.last) * 1000
        self.last = now

    def total(self) -> float:
        return (time.perf_counter() - self.t0) * 1000


def _name_rules(ns: Netns, packets: list[TracedPacket]) -> None:
    """Give each rule step its iptables text and position (looked up by nft handle)."""
    tables = {s.table for p in packets for s in p.steps if s.handle is not None}
    by_table = {t: iptables_text_by_handle(ns, t) for t in sorted(tables)}
    for p in packets:
        for i, s in enumerate(p.steps):
            found = by_table.get(s.table, {}).get(s.handle or -1)
            if found and found[0] == s.chain:
                p.steps[i] = _with_rule(s, found[2], found[1])


def _with_rule(step: Step, rule: str, position: int) -> Step:
    from dataclasses import replace

    return replace(step, rule=rule, position=position)
